//! The YAML reader.
//!
//! This module deals with turning YAML text into the pull [`Event`]s of [`super::event`], for
//! the subset of YAML that Kubernetes manifests use: block mappings and sequences (including
//! sequences at their parent key's indentation, as kubectl writes them), plain, single- and
//! double-quoted scalars over one or more lines, literal and folded block scalars, flow
//! collections, comments, document markers, `%YAML`/`%TAG` directives, the standard `!!`
//! tags, CRLF line ends and a UTF-8 BOM.
//!
//! It is a single-pass scanner over the bytes with an explicit stack of open collections
//! (at most [`MAX_DEPTH`]): no recursion, no allocation, O(n) in the input, and no panics on
//! any input. Anchors and aliases are expanded as go-yaml expands them, within an explicit
//! budget that refuses an alias bomb before expanding it (see [`anchors`]); the firmware
//! build (`small`) refuses them. Refused too: `<<` merge keys (SPEC 2.2), complex (`?`) keys,
//! collections as keys, single-pair mappings inside flow sequences (`[a: b]`) and
//! non-standard tags. Empty documents before the first node are skipped; the first document
//! with content is read, and [`YamlReader::trailer`] counts the documents after it (SPEC 1.9).

#[cfg(not(feature = "small"))]
mod anchors;

use heapless::Vec;

use super::event::{
    Chomp, Event, Events, Mark, Scalar, ScalarStyle, SyntaxError, SyntaxErrorKind, Tag, Trailer,
};
use super::scalar::yaml_escape;
use crate::config::MAX_DEPTH;

type Result<T> = core::result::Result<T, SyntaxError>;
type Step<'a> = Result<(Event<'a>, Mark)>;

/// A byte cursor that keeps line, column and indentation facts up to date.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cursor<'a> {
    pub(super) text: &'a str,
    pub(super) pos: usize,
    pub(super) line: u32,
    /// 0-based column in characters.
    pub(super) col: u32,
    /// Only blanks so far on the current line.
    pub(super) fresh: bool,
    /// The first tab among the leading blanks of the current line.
    pub(super) indent_tab: Option<Mark>,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `text`, past a UTF-8 BOM.
    pub(super) fn new(text: &'a str) -> Self {
        let pos = if text.starts_with('\u{feff}') { 3 } else { 0 };
        Cursor {
            text,
            pos,
            line: 1,
            col: 0,
            fresh: true,
            indent_tab: None,
        }
    }
    pub(super) fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }
    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }
    pub(super) fn peek_at(&self, k: usize) -> Option<u8> {
        self.bytes().get(self.pos.saturating_add(k)).copied()
    }
    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }
    pub(super) fn mark(&self) -> Mark {
        Mark {
            line: self.line,
            column: self.col.saturating_add(1),
        }
    }
    pub(super) fn bump(&mut self) {
        let Some(b) = self.peek() else { return };
        match b {
            b'\n' => {
                self.line = self.line.saturating_add(1);
                self.col = 0;
                self.fresh = true;
                self.indent_tab = None;
            }
            b'\t' => {
                if self.fresh && self.indent_tab.is_none() {
                    self.indent_tab = Some(self.mark());
                }
                self.col = self.col.saturating_add(1);
            }
            b' ' | b'\r' => self.col = self.col.saturating_add(1),
            _ => {
                self.fresh = false;
                if b & 0xC0 != 0x80 {
                    self.col = self.col.saturating_add(1);
                }
            }
        }
        self.pos += 1;
    }
    /// How many bytes from the cursor on are ASCII characters with no meaning to the
    /// plain-scalar scanner: not blanks, line breaks or the indicators `:#,[]{}`.
    #[cfg(not(feature = "small"))]
    fn ordinary_run(&self) -> usize {
        let rest = self.bytes().get(self.pos..).unwrap_or(&[]);
        rest.iter()
            .position(|&b| {
                !matches!(b, b'!'..=b'~')
                    || matches!(b, b':' | b'#' | b',' | b'[' | b']' | b'{' | b'}')
            })
            .unwrap_or(rest.len())
    }
    /// Moves over `n` bytes that [`Cursor::ordinary_run`] counted: as `n` calls of
    /// [`Cursor::bump`] would (one column each, the line no longer blank so far).
    #[cfg(not(feature = "small"))]
    fn advance_ordinary(&mut self, n: usize) {
        self.pos += n;
        self.col = self
            .col
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        self.fresh = false;
    }
    /// Moves over the spaces at the cursor at once (as `bump` would, one column each).
    #[cfg(not(feature = "small"))]
    fn skip_spaces(&mut self) {
        let rest = self.bytes().get(self.pos..).unwrap_or(&[]);
        let n = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        self.pos += n;
        self.col = self
            .col
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }
    pub(super) fn bump_n(&mut self, n: usize) {
        for _ in 0..n {
            self.bump();
        }
    }
    pub(super) fn slice(&self, a: usize, b: usize) -> &'a str {
        self.text.get(a..b).unwrap_or("")
    }
    pub(super) fn err(&self, kind: SyntaxErrorKind) -> SyntaxError {
        SyntaxError {
            kind,
            mark: self.mark(),
        }
    }
}

fn is_ws_or_end(b: Option<u8>) -> bool {
    matches!(b, None | Some(b' ' | b'\t' | b'\n' | b'\r'))
}

fn is_eol(b: Option<u8>) -> bool {
    matches!(b, None | Some(b'\n' | b'\r'))
}

fn is_flow_indicator(b: Option<u8>) -> bool {
    matches!(b, Some(b',' | b'[' | b']' | b'{' | b'}'))
}

fn err(kind: SyntaxErrorKind, mark: Mark) -> SyntaxError {
    SyntaxError { kind, mark }
}

/// Where a flow collection is in its grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// Just after `[` / `{`.
    Open,
    /// Just after a `,`.
    Comma,
    /// After a mapping key, before `:`.
    Key,
    /// After a mapping `:`.
    Colon,
    /// After an entry (sequence item or mapping value).
    Entry,
}

/// An open collection.
#[derive(Clone, Copy, Debug)]
enum Frame {
    /// Block mapping whose keys stand at column `indent`; `value`: a key was just read.
    Map { indent: u32, value: bool },
    /// Block sequence whose `-` stand at column `indent`.
    Seq { indent: u32 },
    /// Flow sequence opened at `open`.
    FlowSeq { state: Flow, open: Mark },
    /// Flow mapping opened at `open`.
    FlowMap { state: Flow, open: Mark },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Start,
    Body,
    Done,
}

/// A pull reader of the first YAML document in a string (see the module docs).
#[derive(Debug)]
pub struct YamlReader<'a> {
    cur: Cursor<'a>,
    stack: Vec<Frame, MAX_DEPTH>,
    phase: Phase,
    pending: Option<(Event<'a>, Mark)>,
    failed: Option<SyntaxError>,
    /// The first tab before any content on a line skipped as blank or comment in block
    /// context: libyaml (and go-yaml) reject those as they reject tab indentation.
    blank_tab: Option<Mark>,
    /// Anchors defined so far and aliases being expanded.
    #[cfg(not(feature = "small"))]
    aliases: anchors::Aliases<'a>,
}

impl<'a> YamlReader<'a> {
    /// A reader over `input` (a leading UTF-8 BOM is skipped).
    pub fn new(input: &'a str) -> Self {
        YamlReader {
            cur: Cursor::new(input),
            stack: Vec::new(),
            phase: Phase::Start,
            pending: None,
            failed: None,
            blank_tab: None,
            #[cfg(not(feature = "small"))]
            aliases: anchors::Aliases::new(),
        }
    }

    fn step(&mut self) -> Step<'a> {
        match self.phase {
            Phase::Start => {
                self.check_characters()?;
                let empty = self.start_document()?;
                self.phase = Phase::Body;
                self.block_node(-1, false, false, empty)
            }
            Phase::Done => Ok((Event::End, self.cur.mark())),
            Phase::Body => {
                #[cfg(not(feature = "small"))]
                self.end_replay();
                self.body_step()
            }
        }
    }

    fn body_step(&mut self) -> Step<'a> {
        match self.stack.last().copied() {
            None => self.finish_root(),
            Some(Frame::Map {
                indent,
                value: false,
            }) => self.map_key(indent),
            Some(Frame::Map {
                indent,
                value: true,
            }) => {
                let after = self.cur.mark();
                self.set_top(Frame::Map {
                    indent,
                    value: false,
                });
                self.block_node(i64::from(indent), false, true, after)
            }
            Some(Frame::Seq { indent }) => self.seq_entry(indent),
            Some(Frame::FlowSeq { state, open }) => self.flow_seq(state, open),
            Some(Frame::FlowMap { state, open }) => self.flow_map(state, open),
        }
    }

    /// Whether the innermost open collection is the one an alias is reading again.
    fn at_replay_root(&self) -> bool {
        #[cfg(not(feature = "small"))]
        if let Some(base) = self.aliases.replay_base() {
            return self.stack.len() == base + 1;
        }
        false
    }

    // -- characters, blanks, comments, markers -------------------------------------------

    /// Rejects characters YAML does not allow in a stream (as libyaml does): C0 controls
    /// other than tab and line breaks, a CR not followed by LF, DEL, C1 controls but NEL,
    /// and U+FFFE / U+FFFF.
    fn check_characters(&self) -> Result<()> {
        // Most manifests are printable ASCII with tabs and LF (or CRLF) line ends: one
        // byte-wise pass says so; anything else is looked at character by character below,
        // which also finds the position of a refused one. (Not in the firmware build, for
        // its flash budget: the loop below gives the same answer.)
        #[cfg(not(feature = "small"))]
        {
            let b = self.cur.text.as_bytes();
            let plain = b.iter().enumerate().all(|(i, &c)| match c {
                b' '..=b'~' | b'\t' | b'\n' => true,
                b'\r' => b.get(i + 1) == Some(&b'\n'),
                _ => false,
            });
            if plain {
                return Ok(());
            }
        }
        let mut line = 1u32;
        let mut col = 1u32;
        let mut chars = self.cur.text.chars().peekable();
        while let Some(c) = chars.next() {
            let ok = match c {
                '\t' | '\n' => true,
                '\r' => chars.peek() == Some(&'\n'),
                '\u{85}' | '\u{feff}' => true,
                '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}' => false,
                _ => true,
            };
            if !ok {
                return Err(err(
                    SyntaxErrorKind::ControlCharacter,
                    Mark { line, column: col },
                ));
            }
            if c == '\n' {
                line = line.saturating_add(1);
                col = 1;
            } else if !(c == '\u{feff}' && line == 1 && col == 1) {
                col = col.saturating_add(1);
            }
        }
        Ok(())
    }

    /// Skips blanks, line breaks and comments.
    fn skip_ws(&mut self) {
        let block = !matches!(
            self.stack.last(),
            Some(Frame::FlowSeq { .. } | Frame::FlowMap { .. })
        );
        loop {
            match self.cur.peek() {
                Some(b'\n') => {
                    // Only a line with no content counts (a tab at the start of a flow
                    // continuation line is fine, as in libyaml).
                    if block && self.cur.fresh && self.blank_tab.is_none() {
                        self.blank_tab = self.cur.indent_tab;
                    }
                    self.cur.bump();
                }
                #[cfg(not(feature = "small"))]
                Some(b' ') => self.cur.skip_spaces(),
                #[cfg(feature = "small")]
                Some(b' ') => self.cur.bump(),
                Some(b'\t' | b'\r') => self.cur.bump(),
                Some(b'#') => {
                    if block && self.cur.fresh && self.blank_tab.is_none() {
                        self.blank_tab = self.cur.indent_tab;
                    }
                    while !is_eol(self.cur.peek()) {
                        self.cur.bump();
                    }
                }
                _ => return,
            }
        }
    }

    /// Skips blanks and a comment on the current line only.
    fn skip_blanks(&mut self) {
        while matches!(self.cur.peek(), Some(b' ' | b'\t')) {
            self.cur.bump();
        }
    }

    /// At a `---` or `...` line start.
    fn at_marker(&self) -> bool {
        self.cur.col == 0 && self.at_marker_text()
    }

    fn at_marker_text(&self) -> bool {
        let rest = self.cur.bytes().get(self.cur.pos..).unwrap_or(&[]);
        (rest.starts_with(b"---") || rest.starts_with(b"...")) && is_ws_or_end(rest.get(3).copied())
    }

    fn at_seq_indicator(&self) -> bool {
        self.cur.peek() == Some(b'-') && is_ws_or_end(self.cur.peek_at(1))
    }

    /// Requires the rest of the line to be blank or a comment.
    fn expect_eol(&mut self) -> Result<()> {
        self.skip_blanks();
        match self.cur.peek() {
            None | Some(b'\n' | b'\r') => Ok(()),
            Some(b'#') if self.prev_is_blank() => Ok(()),
            _ => Err(self.cur.err(SyntaxErrorKind::TrailingContent)),
        }
    }

    fn prev_is_blank(&self) -> bool {
        let prev = self
            .cur
            .pos
            .checked_sub(1)
            .and_then(|i| self.cur.bytes().get(i));
        matches!(prev, Some(b' ' | b'\t'))
    }

    fn set_top(&mut self, frame: Frame) {
        if let Some(top) = self.stack.last_mut() {
            *top = frame;
        }
    }

    fn push(&mut self, frame: Frame, mark: Mark) -> Result<()> {
        self.stack
            .push(frame)
            .map_err(|_| err(SyntaxErrorKind::TooDeep, mark))
    }

    // -- documents --------------------------------------------------------------------------

    /// Reads directives and markers up to the first node; skips empty documents. Returns the
    /// mark an empty root would have.
    fn start_document(&mut self) -> Result<Mark> {
        // A directive must be followed by a `---` line (YAML 1.2 §9.2; libyaml, and so the
        // kubelet's go-yaml, rejects a document without it).
        let mut directive = false;
        loop {
            self.skip_ws();
            if self.cur.at_end() {
                if directive {
                    return Err(self.cur.err(SyntaxErrorKind::DirectiveWithoutStart));
                }
                return Err(self.cur.err(SyntaxErrorKind::EmptyDocument));
            }
            if let Some(t) = self.cur.indent_tab.or(self.blank_tab) {
                return Err(err(SyntaxErrorKind::TabIndent, t));
            }
            if self.cur.col == 0 && self.cur.peek() == Some(b'%') {
                self.directive()?;
                directive = true;
                continue;
            }
            let is_start = self.at_marker() && self.cur.peek() == Some(b'-');
            if directive && !is_start {
                return Err(self.cur.err(SyntaxErrorKind::DirectiveWithoutStart));
            }
            if is_start {
                directive = false;
            }
            if self.at_marker() {
                let start = self.cur.peek() == Some(b'-');
                self.cur.bump_n(3);
                if start {
                    let after = self.cur.mark();
                    let save = self.cur;
                    self.skip_ws();
                    if self.cur.at_end() || self.at_marker() {
                        continue;
                    }
                    self.cur = save;
                    return Ok(after);
                }
                continue;
            }
            return Ok(self.cur.mark());
        }
    }

    fn directive(&mut self) -> Result<()> {
        let mark = self.cur.mark();
        let start = self.cur.pos;
        while !is_eol(self.cur.peek()) {
            self.cur.bump();
        }
        let line = self.cur.slice(start, self.cur.pos);
        // Up to the first " #" (a comment); a byte search keeps core's substring searcher
        // out of the firmware.
        let end = line.as_bytes().windows(2).position(|w| w == b" #");
        let line = end.and_then(|i| line.get(..i)).unwrap_or(line).trim_end();
        let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty());
        let ok = match (words.next(), words.next(), words.next(), words.next()) {
            (Some("%YAML"), Some(v), None, _) => matches!(v, "1.1" | "1.2" | "1.0"),
            (Some("%TAG"), Some(_), Some(_), None) => true,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(err(SyntaxErrorKind::BadDirective, mark))
        }
    }

    /// After the root node: only blanks, comments and document markers may follow.
    fn finish_root(&mut self) -> Step<'a> {
        self.skip_ws();
        if let Some(t) = self.blank_tab {
            return Err(err(SyntaxErrorKind::TabIndent, t));
        }
        if self.cur.at_end() || self.at_marker() {
            self.phase = Phase::Done;
            return Ok((Event::End, self.cur.mark()));
        }
        Err(self.cur.err(SyntaxErrorKind::TrailingContent))
    }

    // -- block structure --------------------------------------------------------------------

    fn map_key(&mut self, indent: u32) -> Step<'a> {
        self.skip_ws();
        let mark = self.cur.mark();
        if self.cur.at_end() || self.at_marker() || self.cur.col < indent {
            self.stack.pop();
            return Ok((Event::MapEnd, mark));
        }
        if let Some(t) = self.cur.indent_tab.or(self.blank_tab) {
            return Err(err(SyntaxErrorKind::TabIndent, t));
        }
        if self.cur.col > indent || !self.cur.fresh {
            return Err(self.cur.err(SyntaxErrorKind::BadIndent));
        }
        let mut tag = None;
        loop {
            match self.cur.peek() {
                Some(b'-') if is_ws_or_end(self.cur.peek_at(1)) => {
                    return Err(self.cur.err(SyntaxErrorKind::MixedBlock))
                }
                Some(b'[' | b'{') => return Err(self.cur.err(SyntaxErrorKind::ComplexKey)),
                Some(b'|' | b'>') => return Err(self.cur.err(SyntaxErrorKind::ExpectedKey)),
                Some(b'!') => {
                    tag = Some(self.tag()?);
                    self.skip_blanks();
                }
                #[cfg(not(feature = "small"))]
                Some(b'&') => {
                    self.read_anchor(|_| None)?;
                    self.skip_blanks();
                }
                #[cfg(not(feature = "small"))]
                Some(b'*') => {
                    let (key, _) = self.alias_key(tag.is_some())?;
                    self.skip_blanks();
                    if self.cur.peek() != Some(b':') || !is_ws_or_end(self.cur.peek_at(1)) {
                        return Err(self.cur.err(SyntaxErrorKind::ExpectedKey));
                    }
                    self.cur.bump();
                    self.set_top(Frame::Map {
                        indent,
                        value: true,
                    });
                    return Ok((Event::Scalar(key), key.mark));
                }
                _ => match self.block_indicator_error() {
                    Some(e) => return Err(e),
                    None => break,
                },
            }
        }
        let (scalar, colon) = self.block_scalar_token(tag, i64::from(indent))?;
        match colon {
            Some(_) => {
                merge_key(&scalar)?;
                self.cur.bump();
                self.set_top(Frame::Map {
                    indent,
                    value: true,
                });
                Ok((Event::Scalar(scalar), scalar.mark))
            }
            None => Err(err(SyntaxErrorKind::ExpectedKey, scalar.mark)),
        }
    }

    fn seq_entry(&mut self, indent: u32) -> Step<'a> {
        self.skip_ws();
        let mark = self.cur.mark();
        if self.cur.at_end() || self.at_marker() || self.cur.col < indent {
            self.stack.pop();
            return Ok((Event::SeqEnd, mark));
        }
        if let Some(t) = self.cur.indent_tab.or(self.blank_tab) {
            return Err(err(SyntaxErrorKind::TabIndent, t));
        }
        if self.cur.col > indent {
            return Err(self.cur.err(SyntaxErrorKind::BadIndent));
        }
        if !self.at_seq_indicator() {
            // A sequence read again for an alias ends where it ended the first time.
            if self.at_replay_root() {
                self.stack.pop();
                return Ok((Event::SeqEnd, mark));
            }
            let n = self.stack.len();
            let parent = n.checked_sub(2).and_then(|i| self.stack.get(i));
            if let Some(Frame::Map { indent: pi, .. }) = parent {
                if *pi == indent {
                    self.stack.pop();
                    return Ok((Event::SeqEnd, mark));
                }
            }
            return Err(self.cur.err(SyntaxErrorKind::MixedBlock));
        }
        self.cur.bump();
        let after = self.cur.mark();
        self.block_node(i64::from(indent), true, false, after)
    }

    /// Reads the node after an indicator (`key:`, `- `, `---`, or the stream start).
    ///
    /// `parent` is the indentation of the enclosing block collection (-1 at the root);
    /// `compact`: a block collection may start on this line (after `- `); `same_indent_seq`:
    /// a block sequence may stand at `parent`'s indentation (a mapping value, kubectl style);
    /// `empty`: the mark of an empty (null) node.
    fn block_node(
        &mut self,
        parent: i64,
        compact: bool,
        same_indent_seq: bool,
        empty: Mark,
    ) -> Step<'a> {
        let mut tag = None;
        // The node's first token (a tag, an anchor or the node itself) and whether it opens
        // its line: a mapping whose first key follows a tag or anchor on its line starts at
        // the first of them (`&a key: v`, as libyaml reads it).
        let mut first: Option<(Mark, bool)> = None;
        loop {
            self.skip_ws();
            let own_line = self.cur.fresh;
            let mark = self.cur.mark();
            let start = match first {
                Some((m, fresh)) if m.line == mark.line => (m, fresh),
                _ => (mark, own_line),
            };
            first = Some(start);
            let col = i64::from(self.cur.col);
            if self.cur.at_end() || (own_line && self.at_marker()) {
                return Ok(null_scalar(tag, empty));
            }
            if own_line {
                let seq_here = same_indent_seq && col == parent && self.at_seq_indicator();
                if col <= parent && !seq_here {
                    return Ok(null_scalar(tag, empty));
                }
                if let Some(t) = self.cur.indent_tab.or(self.blank_tab) {
                    return Err(err(SyntaxErrorKind::TabIndent, t));
                }
            }
            let block_ok = own_line || compact;
            let next = self.cur.peek_at(1);
            match self.cur.peek() {
                Some(b'!') => {
                    tag = Some(self.tag()?);
                    continue;
                }
                #[cfg(not(feature = "small"))]
                Some(b'&') => {
                    self.read_anchor(|cur| {
                        Some(anchors::Resume::Block {
                            cur,
                            parent,
                            compact,
                            same_indent_seq,
                        })
                    })?;
                    continue;
                }
                #[cfg(not(feature = "small"))]
                Some(b'*') => return self.block_alias(tag.is_some(), start.1 || compact),
                Some(b'|' | b'>') => return self.block_scalar(parent, tag),
                Some(b'[') => return self.open_flow(true),
                Some(b'{') => return self.open_flow(false),
                Some(b'-') if is_ws_or_end(next) => {
                    if !block_ok {
                        return Err(self.cur.err(SyntaxErrorKind::UnexpectedChar));
                    }
                    self.push(
                        Frame::Seq {
                            indent: self.cur.col,
                        },
                        mark,
                    )?;
                    return Ok((Event::SeqStart, mark));
                }
                _ => {
                    if let Some(e) = self.block_indicator_error() {
                        return Err(e);
                    }
                }
            }
            let (scalar, colon) = self.block_scalar_token(tag, parent)?;
            if let Some(colon) = colon {
                let (start, fresh) = start;
                if !(fresh || compact) {
                    return Err(err(SyntaxErrorKind::ExpectedKey, colon));
                }
                merge_key(&scalar)?;
                self.cur.bump();
                self.push(
                    Frame::Map {
                        indent: self.col_of(start),
                        value: true,
                    },
                    start,
                )?;
                self.pending = Some((Event::Scalar(scalar), scalar.mark));
                return Ok((Event::MapStart, start));
            }
            self.expect_eol()?;
            return Ok((Event::Scalar(scalar), scalar.mark));
        }
    }

    fn col_of(&self, mark: Mark) -> u32 {
        mark.column.saturating_sub(1)
    }

    /// Scans a quoted or plain scalar in block context. Returns it and, when a `:` mapping
    /// indicator follows on the same line (the scalar is a key), the colon's mark, with the
    /// cursor on the colon. A plain scalar whose first line is not a key continues on lines
    /// indented more than `parent`.
    fn block_scalar_token(
        &mut self,
        tag: Option<Tag>,
        parent: i64,
    ) -> Result<(Scalar<'a>, Option<Mark>)> {
        let mark = self.cur.mark();
        let start_line = self.cur.line;
        #[cfg(not(feature = "small"))]
        let start_pos = self.cur.pos;
        let (raw, style) = match self.cur.peek() {
            Some(b'"') => (self.double_quoted()?, ScalarStyle::DoubleQuoted),
            Some(b'\'') => (self.single_quoted()?, ScalarStyle::SingleQuoted),
            _ => {
                let start = self.cur.pos;
                let (mut end, stop) = self.plain_line(false);
                if stop == PlainStop::Eol {
                    end = self.plain_continuation(false, parent, end)?;
                }
                (self.cur.slice(start, end), ScalarStyle::Plain)
            }
        };
        let scalar = Scalar {
            raw,
            style,
            tag,
            chomp: Chomp::Clip,
            indent: 0,
            mark,
        };
        // Is it a key? Look for `:` after blanks on the same line.
        let save = self.cur;
        self.skip_blanks();
        if self.cur.peek() == Some(b':') && is_ws_or_end(self.cur.peek_at(1)) {
            let colon = self.cur.mark();
            if self.cur.line != start_line {
                return Err(err(SyntaxErrorKind::ExpectedKey, colon));
            }
            // libyaml (go-yaml, the kubelet's parser) keeps an implicit key only while its
            // `:` comes within 1024 characters of its start; past that the document is
            // refused ("could not find expected ':'"), so keel refuses it too (not the
            // firmware, for its flash budget: such a key is an unknown field there anyway).
            #[cfg(not(feature = "small"))]
            if self.cur.pos > start_pos + 1024 {
                return Err(err(SyntaxErrorKind::MultiLineKey, colon));
            }
            return Ok((scalar, Some(colon)));
        }
        self.cur = save;
        Ok((scalar, None))
    }

    /// The error for a character that cannot start a block node here, if any.
    fn block_indicator_error(&self) -> Option<SyntaxError> {
        let next = self.cur.peek_at(1);
        let kind = match self.cur.peek()? {
            b'&' => SyntaxErrorKind::Anchor,
            b'*' => SyntaxErrorKind::Alias,
            b'?' if is_ws_or_end(next) => SyntaxErrorKind::ComplexKey,
            b':' if is_ws_or_end(next) => SyntaxErrorKind::ExpectedKey,
            b',' | b']' | b'}' | b'%' | b'@' | b'`' | b'#' => SyntaxErrorKind::UnexpectedChar,
            _ => return None,
        };
        Some(self.cur.err(kind))
    }

    // -- scalars ----------------------------------------------------------------------------

    /// Scans `"..."`, validating escapes; returns the text between the quotes.
    fn double_quoted(&mut self) -> Result<&'a str> {
        let open = self.cur.mark();
        self.cur.bump();
        let start = self.cur.pos;
        loop {
            // A `---` or `...` line inside the quotes ends the document (libyaml: "unexpected
            // document indicator"): the quote was never closed.
            if self.at_marker() {
                return Err(err(SyntaxErrorKind::UnterminatedDoubleQuote, open));
            }
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
                    match self.cur.peek() {
                        None => return Err(err(SyntaxErrorKind::UnterminatedDoubleQuote, open)),
                        Some(b'\n') => self.cur.bump(),
                        Some(b'\r') if self.cur.peek_at(1) == Some(b'\n') => self.cur.bump_n(2),
                        Some(_) => {
                            let after = self.cur.bytes().get(self.cur.pos..).unwrap_or(&[]);
                            let (_, used) = yaml_escape(after).map_err(|k| err(k, at))?;
                            self.cur.bump_n(used);
                        }
                    }
                }
                Some(_) => self.cur.bump(),
            }
        }
    }

    /// Scans `'...'`; returns the text between the quotes.
    fn single_quoted(&mut self) -> Result<&'a str> {
        let open = self.cur.mark();
        self.cur.bump();
        let start = self.cur.pos;
        loop {
            // A `---` or `...` line inside the quotes ends the document (libyaml: "unexpected
            // document indicator"): the quote was never closed.
            if self.at_marker() {
                return Err(err(SyntaxErrorKind::UnterminatedSingleQuote, open));
            }
            match self.cur.peek() {
                None => return Err(err(SyntaxErrorKind::UnterminatedSingleQuote, open)),
                Some(b'\'') if self.cur.peek_at(1) == Some(b'\'') => self.cur.bump_n(2),
                Some(b'\'') => {
                    let raw = self.cur.slice(start, self.cur.pos);
                    self.cur.bump();
                    return Ok(raw);
                }
                Some(_) => self.cur.bump(),
            }
        }
    }

    /// Scans one line of a plain scalar; returns the end of its last non-blank character and
    /// why it stopped. The cursor is left at the stop.
    fn plain_line(&mut self, flow: bool) -> (usize, PlainStop) {
        let mut end = self.cur.pos;
        let mut prev_blank = false;
        loop {
            // A run of ASCII bytes that neither stop the scalar nor are blanks moves the
            // cursor by as many columns at once (what `bump` would do byte by byte).
            #[cfg(not(feature = "small"))]
            {
                let run = self.cur.ordinary_run();
                if run > 0 {
                    self.cur.advance_ordinary(run);
                    end = self.cur.pos;
                    prev_blank = false;
                }
            }
            let b = self.cur.peek();
            let next = self.cur.peek_at(1);
            let stop = match b {
                None | Some(b'\n' | b'\r') => Some(PlainStop::Eol),
                Some(b':') if flow && colon_breaks_flow_scalar(next) => Some(PlainStop::FlowColon),
                Some(b':') if is_ws_or_end(next) || (flow && is_flow_indicator(next)) => {
                    Some(PlainStop::Colon)
                }
                Some(b'#') if prev_blank => Some(PlainStop::Comment),
                Some(b',' | b'[' | b']' | b'{' | b'}') if flow => Some(PlainStop::Flow),
                _ => None,
            };
            if let Some(stop) = stop {
                // Leave the cursor just after the text for Colon (blanks before `:` are
                // skipped by the caller) and at the stop otherwise.
                return (end, stop);
            }
            prev_blank = matches!(b, Some(b' ' | b'\t'));
            self.cur.bump();
            if !prev_blank {
                end = self.cur.pos;
            }
        }
    }

    /// Continues a plain scalar over following lines (line folding happens on decode).
    /// `end` is the end of the text so far; returns the new end. In block context a
    /// continuation line must be indented more than `parent`.
    fn plain_continuation(&mut self, flow: bool, parent: i64, mut end: usize) -> Result<usize> {
        loop {
            let save = self.cur;
            while matches!(self.cur.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                self.cur.bump();
            }
            if self.cur.at_end()
                || self.at_marker()
                || !self.cur.fresh
                || save.line == self.cur.line
            {
                self.cur = save;
                return Ok(end);
            }
            if !flow {
                if i64::from(self.cur.col) <= parent {
                    self.cur = save;
                    return Ok(end);
                }
                if let Some(t) = self.cur.indent_tab.or(self.blank_tab) {
                    if i64::from(t.column.saturating_sub(1)) <= parent {
                        return Err(err(SyntaxErrorKind::TabIndent, t));
                    }
                }
            }
            let b = self.cur.peek();
            let next = self.cur.peek_at(1);
            let ends = match b {
                Some(b'#') => true,
                Some(b':') if flow && colon_breaks_flow_scalar(next) => {
                    return Err(self.cur.err(SyntaxErrorKind::UnexpectedChar));
                }
                Some(b':') => is_ws_or_end(next) || (flow && is_flow_indicator(next)),
                Some(b',' | b'[' | b']' | b'{' | b'}') => flow,
                _ => false,
            };
            if ends {
                self.cur = save;
                return Ok(end);
            }
            let (line_end, stop) = self.plain_line(flow);
            end = line_end;
            match stop {
                PlainStop::FlowColon => return Err(self.cur.err(SyntaxErrorKind::UnexpectedChar)),
                PlainStop::Eol => continue,
                PlainStop::Colon if !flow => {
                    return Err(self.cur.err(SyntaxErrorKind::ExpectedKey));
                }
                _ => return Ok(end),
            }
        }
    }

    /// Reads a `|` or `>` block scalar: header, then the body lines.
    fn block_scalar(&mut self, parent: i64, tag: Option<Tag>) -> Step<'a> {
        let mark = self.cur.mark();
        let folded = self.cur.peek() == Some(b'>');
        self.cur.bump();
        let mut chomp = None;
        let mut explicit: Option<u8> = None;
        for _ in 0..2 {
            match self.cur.peek() {
                Some(b'+') if chomp.is_none() => chomp = Some(Chomp::Keep),
                Some(b'-') if chomp.is_none() => chomp = Some(Chomp::Strip),
                Some(d @ b'1'..=b'9') if explicit.is_none() => explicit = Some(d - b'0'),
                _ => break,
            }
            self.cur.bump();
        }
        let before = self.cur.pos;
        self.skip_blanks();
        match self.cur.peek() {
            None | Some(b'\n' | b'\r') => {}
            Some(b'#') if self.cur.pos > before => {
                while !is_eol(self.cur.peek()) {
                    self.cur.bump();
                }
            }
            _ => return Err(err(SyntaxErrorKind::BadBlockHeader, mark)),
        }
        // Past the header's line break.
        while matches!(self.cur.peek(), Some(b'\r')) {
            self.cur.bump();
        }
        if self.cur.peek() == Some(b'\n') {
            self.cur.bump();
        }
        let indent: i64 = match explicit {
            Some(d) if parent >= 0 => parent + i64::from(d),
            Some(d) => i64::from(d),
            None => {
                // As libyaml: the larger of the first content line's indentation and the
                // leading empty lines' lengths, at least parent + 1 and at least 1.
                let mut probe = self.cur;
                let mut max_empty = 0i64;
                let detected;
                loop {
                    let mut n = 0i64;
                    while probe.peek() == Some(b' ') {
                        probe.bump();
                        n += 1;
                    }
                    match probe.peek() {
                        Some(b'\r') | Some(b'\n') => {
                            max_empty = max_empty.max(n);
                            while !matches!(probe.peek(), Some(b'\n') | None) {
                                probe.bump();
                            }
                            probe.bump();
                        }
                        None => {
                            detected = max_empty.max(n);
                            break;
                        }
                        Some(_) => {
                            detected = max_empty.max(n);
                            break;
                        }
                    }
                }
                detected.max(parent + 1).max(1)
            }
        };
        let Ok(indent16) = u16::try_from(indent) else {
            return Err(err(SyntaxErrorKind::BadIndent, mark));
        };
        // Body: empty lines and lines indented at least `indent`. The scan stops at the
        // start of the first line that is neither, or at the end of the input.
        let start = self.cur.pos;
        let mut end = start;
        while !self.cur.at_end() {
            let line_start = self.cur;
            let mut n = 0i64;
            while self.cur.peek() == Some(b' ') && n < indent {
                self.cur.bump();
                n += 1;
            }
            let empty = matches!(self.cur.peek(), Some(b'\r' | b'\n') | None);
            if !empty && n < indent {
                self.cur = line_start;
                break;
            }
            while !matches!(self.cur.peek(), Some(b'\n') | None) {
                self.cur.bump();
            }
            self.cur.bump();
            end = self.cur.pos;
        }
        let scalar = Scalar {
            raw: self.cur.slice(start, end),
            style: if folded {
                ScalarStyle::Folded
            } else {
                ScalarStyle::Literal
            },
            tag,
            chomp: chomp.unwrap_or(Chomp::Clip),
            indent: indent16,
            mark,
        };
        Ok((Event::Scalar(scalar), mark))
    }

    fn tag(&mut self) -> Result<Tag> {
        let mark = self.cur.mark();
        let rest = self.cur.bytes().get(self.cur.pos..).unwrap_or(&[]);
        let len = rest
            .iter()
            .position(|&b| {
                matches!(
                    b,
                    b' ' | b'\t' | b'\r' | b'\n' | b',' | b'[' | b']' | b'{' | b'}'
                )
            })
            .unwrap_or(rest.len());
        let tag = match rest.get(..len).unwrap_or(&[]) {
            b"!!str" => Tag::Str,
            b"!!int" => Tag::Int,
            b"!!float" => Tag::Float,
            b"!!bool" => Tag::Bool,
            b"!!null" => Tag::Null,
            b"!!map" => Tag::Map,
            b"!!seq" => Tag::Seq,
            b"!!binary" => Tag::Binary,
            b"!!timestamp" => Tag::Timestamp,
            _ => return Err(err(SyntaxErrorKind::UnknownTag, mark)),
        };
        self.cur.bump_n(len);
        Ok(tag)
    }

    // -- flow collections -------------------------------------------------------------------

    fn open_flow(&mut self, seq: bool) -> Step<'a> {
        let open = self.cur.mark();
        let frame = if seq {
            Frame::FlowSeq {
                state: Flow::Open,
                open,
            }
        } else {
            Frame::FlowMap {
                state: Flow::Open,
                open,
            }
        };
        self.push(frame, open)?;
        self.cur.bump();
        Ok((
            if seq {
                Event::SeqStart
            } else {
                Event::MapStart
            },
            open,
        ))
    }

    /// Skips blanks, breaks and comments inside a flow collection.
    fn flow_ws(&mut self, open: Mark) -> Result<()> {
        self.skip_ws();
        if self.cur.at_end() || self.at_marker() {
            return Err(err(SyntaxErrorKind::UnclosedFlow, open));
        }
        Ok(())
    }

    /// Closes the innermost flow collection; when it was a block-level node, checks the
    /// rest of its line.
    fn close_flow(&mut self, event: Event<'a>) -> Step<'a> {
        let mark = self.cur.mark();
        // A collection read again for an alias: its line was checked the first time, in
        // its own context.
        let replayed = self.at_replay_root();
        self.cur.bump();
        self.stack.pop();
        if !replayed
            && !matches!(
                self.stack.last(),
                Some(Frame::FlowSeq { .. } | Frame::FlowMap { .. })
            )
        {
            let save = self.cur;
            self.skip_blanks();
            if self.cur.peek() == Some(b':') && is_ws_or_end(self.cur.peek_at(1)) {
                return Err(self.cur.err(SyntaxErrorKind::ComplexKey));
            }
            self.cur = save;
            self.expect_eol()?;
        }
        Ok((event, mark))
    }

    fn set_flow_state(&mut self, state: Flow) {
        if let Some(Frame::FlowSeq { state: s, .. } | Frame::FlowMap { state: s, .. }) =
            self.stack.last_mut()
        {
            *s = state;
        }
    }

    fn flow_seq(&mut self, state: Flow, open: Mark) -> Step<'a> {
        self.flow_ws(open)?;
        match (state, self.cur.peek()) {
            (_, Some(b'}')) => Err(err(SyntaxErrorKind::UnclosedFlow, open)),
            (Flow::Entry, Some(b',')) => {
                self.cur.bump();
                self.set_flow_state(Flow::Comma);
                self.flow_seq(Flow::Comma, open)
            }
            (_, Some(b']')) => self.close_flow(Event::SeqEnd),
            (_, Some(b',')) => Err(self.cur.err(SyntaxErrorKind::UnexpectedComma)),
            (Flow::Entry, _) => Err(self.cur.err(SyntaxErrorKind::UnexpectedChar)),
            _ => {
                self.set_flow_state(Flow::Entry);
                let ev = self.flow_node(false)?;
                if let (Event::Scalar(_), true) = (ev.0, self.flow_pair_follows()) {
                    return Err(self.cur.err(SyntaxErrorKind::FlowPair));
                }
                Ok(ev)
            }
        }
    }

    /// After a scalar inside a flow sequence: does a `:` follow (a single-pair mapping)?
    fn flow_pair_follows(&mut self) -> bool {
        let save = self.cur;
        self.skip_ws();
        let pair = self.cur.peek() == Some(b':');
        if !pair {
            self.cur = save;
        }
        pair
    }

    fn flow_map(&mut self, state: Flow, open: Mark) -> Step<'a> {
        self.flow_ws(open)?;
        let b = self.cur.peek();
        match (state, b) {
            (_, Some(b']')) => Err(err(SyntaxErrorKind::UnclosedFlow, open)),
            (Flow::Open | Flow::Comma, Some(b'}')) => self.close_flow(Event::MapEnd),
            (Flow::Open | Flow::Comma, Some(b',')) => {
                Err(self.cur.err(SyntaxErrorKind::UnexpectedComma))
            }
            (Flow::Open | Flow::Comma, _) => {
                if matches!(b, Some(b'[' | b'{')) {
                    return Err(self.cur.err(SyntaxErrorKind::ComplexKey));
                }
                self.set_flow_state(Flow::Key);
                let start = self.cur.pos;
                let key = self.flow_node(true)?;
                if let Event::Scalar(k) = &key.0 {
                    merge_key(k)?;
                }
                self.check_flow_key(start, key.1)?;
                Ok(key)
            }
            (Flow::Key, Some(b':')) => {
                self.cur.bump();
                self.set_flow_state(Flow::Colon);
                self.flow_map(Flow::Colon, open)
            }
            (Flow::Key | Flow::Colon, Some(b',' | b'}')) => {
                self.set_flow_state(Flow::Entry);
                Ok(null_scalar(None, self.cur.mark()))
            }
            (Flow::Key, _) => Err(self.cur.err(SyntaxErrorKind::UnexpectedChar)),
            (Flow::Colon, _) => {
                self.set_flow_state(Flow::Entry);
                self.flow_node(false)
            }
            (Flow::Entry, Some(b',')) => {
                self.cur.bump();
                self.set_flow_state(Flow::Comma);
                self.flow_map(Flow::Comma, open)
            }
            (Flow::Entry, Some(b'}')) => self.close_flow(Event::MapEnd),
            (Flow::Entry, _) => Err(self.cur.err(SyntaxErrorKind::UnexpectedChar)),
        }
    }

    /// After a key inside `{ }`: libyaml (go-yaml, the kubelet's parser) keeps an implicit
    /// key only while its `:` stands on the key's line and within 1024 bytes of its start;
    /// past that the key is dropped and the `:` is an error there (`{a: 1, siz\ne: 2}`).
    fn check_flow_key(&mut self, start: usize, key: Mark) -> Result<()> {
        let save = self.cur;
        self.skip_ws();
        let colon = self.cur.mark();
        let stale = self.cur.peek() == Some(b':')
            && (colon.line != key.line || self.cur.pos > start + 1024);
        self.cur = save;
        if stale {
            return Err(err(SyntaxErrorKind::MultiLineKey, colon));
        }
        Ok(())
    }

    /// A node inside a flow collection (the frame's state is already advanced).
    fn flow_node(&mut self, key: bool) -> Step<'a> {
        let mut tag = None;
        loop {
            let mark = self.cur.mark();
            let next = self.cur.peek_at(1);
            match self.cur.peek() {
                Some(b'!') => {
                    tag = Some(self.tag()?);
                    self.skip_ws();
                    if matches!(self.cur.peek(), Some(b',' | b']' | b'}')) {
                        return Ok(null_scalar(tag, mark));
                    }
                    continue;
                }
                #[cfg(not(feature = "small"))]
                Some(b'&') => {
                    self.read_anchor(|_| None)?;
                    self.skip_ws();
                    if matches!(self.cur.peek(), Some(b',' | b']' | b'}')) {
                        return Ok(null_scalar(tag, mark));
                    }
                    continue;
                }
                #[cfg(not(feature = "small"))]
                Some(b'*') => return self.flow_alias(tag.is_some(), key),
                #[cfg(feature = "small")]
                Some(b'&') => return Err(self.cur.err(SyntaxErrorKind::Anchor)),
                #[cfg(feature = "small")]
                Some(b'*') => return Err(self.cur.err(SyntaxErrorKind::Alias)),
                Some(b @ (b'[' | b'{')) if !key => {
                    #[cfg(not(feature = "small"))]
                    self.note_flow_start();
                    return self.open_flow(b == b'[');
                }
                Some(b'[' | b'{') => return Err(self.cur.err(SyntaxErrorKind::ComplexKey)),
                Some(b'?') if is_ws_or_end(next) || is_flow_indicator(next) => {
                    return Err(self.cur.err(SyntaxErrorKind::ComplexKey))
                }
                Some(b'-' | b':') if is_ws_or_end(next) || is_flow_indicator(next) => {
                    return Err(self.cur.err(SyntaxErrorKind::UnexpectedChar))
                }
                // Inside [ ] and { }, libyaml and go-yaml (the kubelet's parser) do not let
                // a plain scalar start with ':' or '?' at all (`{a: 1, :x}`); YAML 1.2 does.
                // Rejecting keeps keel from accepting what the kubelet refuses.
                Some(b':' | b'?') => return Err(self.cur.err(SyntaxErrorKind::UnexpectedChar)),
                Some(b'|' | b'>' | b'%' | b'@' | b'`' | b'#') => {
                    return Err(self.cur.err(SyntaxErrorKind::UnexpectedChar))
                }
                Some(b'"') => {
                    let raw = self.double_quoted()?;
                    return Ok(scalar(raw, ScalarStyle::DoubleQuoted, tag, mark));
                }
                Some(b'\'') => {
                    let raw = self.single_quoted()?;
                    return Ok(scalar(raw, ScalarStyle::SingleQuoted, tag, mark));
                }
                _ => {
                    let start = self.cur.pos;
                    let (end, stop) = self.plain_line(true);
                    if stop == PlainStop::FlowColon {
                        return Err(self.cur.err(SyntaxErrorKind::UnexpectedChar));
                    }
                    let end = if stop == PlainStop::Eol {
                        self.plain_continuation(true, -1, end)?
                    } else {
                        end
                    };
                    return Ok(scalar(
                        self.cur.slice(start, end),
                        ScalarStyle::Plain,
                        tag,
                        mark,
                    ));
                }
            }
        }
    }

    // -- trailer ----------------------------------------------------------------------------

    fn count_trailer(&self) -> Trailer {
        let mut t = Trailer::default();
        let rest = self.cur.text.get(self.cur.pos..).unwrap_or("");
        // The cursor is at a line start (a marker) or at the end, except after an error.
        let mut line_no = self.cur.line;
        let mut counted = true;
        let mut marker_line = 0u32;
        for line in rest.split('\n') {
            let l = line.strip_suffix('\r').unwrap_or(line);
            let marker = |m: &str| {
                l.strip_prefix(m)
                    .filter(|r| r.is_empty() || r.starts_with([' ', '\t']))
            };
            let mut content_line = 0u32;
            if let Some(r) = marker("---") {
                counted = false;
                marker_line = line_no;
                let r = r.trim_start_matches([' ', '\t']);
                if !r.is_empty() && !r.starts_with('#') {
                    content_line = line_no;
                }
            } else if marker("...").is_some() {
                counted = false;
                marker_line = 0;
            } else if !(counted || l.starts_with('%')) {
                let r = l.trim_start_matches([' ', '\t']);
                if !r.is_empty() && !r.starts_with('#') {
                    content_line = line_no;
                }
            }
            if content_line > 0 && !counted {
                counted = true;
                t.extra_documents = t.extra_documents.saturating_add(1);
                if t.first_extra_line == 0 {
                    t.first_extra_line = if marker_line > 0 {
                        marker_line
                    } else {
                        content_line
                    };
                }
            }
            line_no = line_no.saturating_add(1);
        }
        t
    }
}

/// Why a line of a plain scalar stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PlainStop {
    Eol,
    Colon,
    Comment,
    Flow,
    /// In a flow collection, `:` right before `,?[]{}` inside a plain scalar: libyaml (and
    /// so serde_yaml and go-yaml) rejects it ("found unexpected ':'").
    FlowColon,
}

/// `,?[]{}`: after a `:` inside a flow plain scalar, libyaml reports an error.
fn colon_breaks_flow_scalar(next: Option<u8>) -> bool {
    matches!(next, Some(b',' | b'?' | b'[' | b']' | b'{' | b'}'))
}

fn scalar<'a>(raw: &'a str, style: ScalarStyle, tag: Option<Tag>, mark: Mark) -> (Event<'a>, Mark) {
    (
        Event::Scalar(Scalar {
            raw,
            style,
            tag,
            chomp: Chomp::Clip,
            indent: 0,
            mark,
        }),
        mark,
    )
}

fn null_scalar<'a>(tag: Option<Tag>, mark: Mark) -> (Event<'a>, Mark) {
    scalar("", ScalarStyle::Plain, tag, mark)
}

/// A mapping key written `<<` (plain, untagged) is go-yaml's merge key; keel refuses it
/// (SPEC 2.2) rather than read it as an unknown field and drop what it merges.
#[cfg_attr(feature = "small", allow(unused_variables))]
fn merge_key(key: &Scalar<'_>) -> Result<()> {
    // The firmware (`small`) leaves `<<` to the decoder, which refuses it as an unknown
    // field: the same verdict for fewer bytes of its flash budget.
    #[cfg(not(feature = "small"))]
    if key.style == ScalarStyle::Plain && key.tag.is_none() && key.raw == "<<" {
        return Err(err(SyntaxErrorKind::MergeKey, key.mark));
    }
    Ok(())
}

impl<'a> Events<'a> for YamlReader<'a> {
    fn next_event(&mut self) -> core::result::Result<(Event<'a>, Mark), SyntaxError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if let Some(p) = self.pending.take() {
            return Ok(p);
        }
        let mut r = self.step();
        #[cfg(not(feature = "small"))]
        if let Ok((ev, _)) = &r {
            if let Err(e) = self.note_event(ev) {
                r = Err(e);
            }
        }
        // An explicit type tag the text does not fit (`!!int "09"`) is an error, as in
        // go-yaml, even in a field keel ignores.
        if let Ok((Event::Scalar(sc), m)) = &r {
            if !sc.tag_fits() {
                r = Err(err(SyntaxErrorKind::TagMismatch, *m));
            }
        }
        if let Err(e) = r {
            self.failed = Some(e);
        }
        r
    }

    fn trailer(&mut self) -> core::result::Result<Trailer, SyntaxError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        Ok(self.count_trailer())
    }
}

/// Test helpers shared by the reader and scalar tests: walk events into strings and trees.
#[cfg(test)]
pub(crate) mod test_support {
    extern crate std;
    use std::format;
    use std::string::{String, ToString};
    use std::vec::Vec;

    use crate::manifest::event::{
        Event, Events, Resolved, Scalar, SyntaxError, SyntaxErrorKind, TextSink,
    };

    /// A growable sink.
    #[derive(Default)]
    pub struct StringSink(pub String);

    impl TextSink for StringSink {
        type Error = core::convert::Infallible;
        fn push_str(&mut self, s: &str) -> Result<(), Self::Error> {
            self.0.push_str(s);
            Ok(())
        }
    }

    /// The decoded text of a scalar.
    pub fn text(s: &Scalar<'_>) -> String {
        let mut sink = StringSink::default();
        let Ok(()) = s.write_to(&mut sink);
        sink.0
    }

    /// All events as one string: `{ } [ ]` and scalars as their decoded text in quotes.
    pub fn events<'a>(r: &mut impl Events<'a>) -> Result<String, SyntaxError> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            match r.next_event()?.0 {
                Event::MapStart => out.push("{".to_string()),
                Event::MapEnd => out.push("}".to_string()),
                Event::SeqStart => out.push("[".to_string()),
                Event::SeqEnd => out.push("]".to_string()),
                Event::Scalar(s) => out.push(format!("{:?}", text(&s))),
                Event::End => return Ok(out.join(" ")),
            }
        }
        panic!("no End after 100000 events");
    }

    /// The first error of a reader, as (kind, line, column).
    pub fn first_error<'a>(r: &mut impl Events<'a>) -> (SyntaxErrorKind, u32, u32) {
        for _ in 0..100_000 {
            match r.next_event() {
                Err(e) => return (e.kind, e.mark.line, e.mark.column),
                Ok((Event::End, _)) => panic!("no error"),
                Ok(_) => {}
            }
        }
        panic!("no End after 100000 events");
    }

    /// A document as a tree, scalars resolved.
    #[derive(Debug, PartialEq, Clone)]
    pub enum Node {
        Null,
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(String),
        Seq(Vec<Node>),
        Map(Vec<(String, Node)>),
    }

    fn scalar_node(s: &Scalar<'_>) -> Node {
        match s.resolve() {
            Resolved::Null => Node::Null,
            Resolved::Bool(b) => Node::Bool(b),
            Resolved::Int(i) => Node::Int(i),
            Resolved::Float => Node::Float(crate::manifest::scalar::float_value(s.raw)),
            Resolved::Str => Node::Str(text(s)),
        }
    }

    /// Walks a reader's events into a [`Node`].
    pub fn tree<'a>(r: &mut impl Events<'a>) -> Result<Node, SyntaxError> {
        // (collection, pending key)
        let mut stack: Vec<(Node, Option<String>)> = Vec::new();
        loop {
            let node = match r.next_event()?.0 {
                Event::MapStart => {
                    stack.push((Node::Map(Vec::new()), None));
                    continue;
                }
                Event::SeqStart => {
                    stack.push((Node::Seq(Vec::new()), None));
                    continue;
                }
                Event::MapEnd | Event::SeqEnd => stack.pop().expect("balanced").0,
                Event::Scalar(s) => {
                    if let Some((Node::Map(_), key @ None)) = stack.last_mut() {
                        *key = Some(text(&s));
                        continue;
                    }
                    scalar_node(&s)
                }
                Event::End => panic!("End inside a node"),
            };
            match stack.last_mut() {
                None => {
                    assert!(matches!(r.next_event()?.0, Event::End));
                    return Ok(node);
                }
                Some((Node::Seq(items), _)) => items.push(node),
                Some((Node::Map(entries), key)) => entries.push((key.take().unwrap(), node)),
                Some(_) => unreachable!(),
            }
        }
    }

    /// serde_yaml's view of a document in the same shape.
    pub fn reference(input: &str) -> Node {
        let v: serde_yaml::Value = serde_yaml::from_str(input).expect("serde_yaml parses");
        from_value(&v)
    }

    fn from_value(v: &serde_yaml::Value) -> Node {
        use serde_yaml::Value;
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Node::Int(i),
                None => Node::Float(n.as_f64().unwrap()),
            },
            Value::String(s) => Node::Str(s.clone()),
            Value::Sequence(items) => Node::Seq(items.iter().map(from_value).collect()),
            Value::Mapping(m) => Node::Map(
                m.iter()
                    .map(|(k, v)| {
                        let k = match k {
                            Value::String(s) => s.clone(),
                            other => serde_yaml::to_string(other).unwrap().trim_end().to_string(),
                        };
                        (k, from_value(v))
                    })
                    .collect(),
            ),
            Value::Tagged(t) => from_value(&t.value),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;
    use std::vec::Vec;
    use std::{format, vec};

    use super::test_support::{events, first_error, reference, tree, Node};
    use super::*;
    use SyntaxErrorKind as K;

    fn ev(input: &str) -> String {
        match events(&mut YamlReader::new(input)) {
            Ok(s) => s,
            Err(e) => panic!("{input:?}: {e:?}"),
        }
    }

    fn error(input: &str) -> (SyntaxErrorKind, u32, u32) {
        first_error(&mut YamlReader::new(input))
    }

    #[test]
    fn block_structure_events() {
        let table: &[(&str, &str)] = &[
            ("a: 1\nb: two\n", r#"{ "a" "1" "b" "two" }"#),
            (
                "a:\n  b: c\n  d: e\nf: g",
                r#"{ "a" { "b" "c" "d" "e" } "f" "g" }"#,
            ),
            ("- a\n- b\n", r#"[ "a" "b" ]"#),
            (
                "key:\n- a\n- b\nnext: 1\n",
                r#"{ "key" [ "a" "b" ] "next" "1" }"#,
            ),
            ("key:\n  - a\n  - b\n", r#"{ "key" [ "a" "b" ] }"#),
            (
                "c:\n- name: x\n  image: y\n- name: z\n",
                r#"{ "c" [ { "name" "x" "image" "y" } { "name" "z" } ] }"#,
            ),
            ("- - a\n  - b\n- c\n", r#"[ [ "a" "b" ] "c" ]"#),
            ("a:\nb:\n", r#"{ "a" "" "b" "" }"#),
            ("- \n- x\n", r#"[ "" "x" ]"#),
            ("a:   \n  # c\n  b\n", r#"{ "a" "b" }"#),
            ("plain", r#""plain""#),
            (
                "a: b # comment\n# full line\nc: 'd # not' # c\n",
                r##"{ "a" "b" "c" "d # not" }"##,
            ),
            ("a: x#y\n", r##"{ "a" "x#y" }"##),
            ("a: \"#q\"\n", r##"{ "a" "#q" }"##),
            ("url: http://x:80/p\n", r#"{ "url" "http://x:80/p" }"#),
            ("a:\tb\n", r#"{ "a" "b" }"#),
            ("'q k': 1\n\"d\" : 2\n", r#"{ "q k" "1" "d" "2" }"#),
            ("a: -1\nb: -x\nc: :x\n", r#"{ "a" "-1" "b" "-x" "c" ":x" }"#),
        ];
        for (input, want) in table {
            assert_eq!(ev(input), *want, "{input:?}");
        }
    }

    #[test]
    fn multi_line_scalars_fold() {
        let table: &[(&str, &str)] = &[
            (
                "a: one\n  two\n\n  three\nb: x",
                r#"{ "a" "one two\nthree" "b" "x" }"#,
            ),
            ("- one\n  two\n", r#"[ "one two" ]"#),
            (
                "a: 'one\n  two  \n\n\n  three'\n",
                r#"{ "a" "one two\n\nthree" }"#,
            ),
            ("a: \"one\\\n   two\"\n", r#"{ "a" "onetwo" }"#),
            ("a: \"x \\\n  y\"\n", r#"{ "a" "x y" }"#),
            ("a: \"x\\ \n  y\"\n", r#"{ "a" "x  y" }"#),
            ("a: \"x\n\"\n", r#"{ "a" "x " }"#),
            ("a: 'it''s'\n", r#"{ "a" "it's" }"#),
            ("a: ' lead '\n", r#"{ "a" " lead " }"#),
        ];
        for (input, want) in table {
            assert_eq!(ev(input), *want, "{input:?}");
        }
    }

    #[test]
    fn double_quoted_escapes_decode() {
        let input = r#"a: "\0\a\b\t\n\v\f\r\e\ \"\\\N\_\L\P\x41\u00e9\U0001F600""#;
        let want = "\0\x07\x08\t\n\x0b\x0c\r\x1b \"\\\u{85}\u{a0}\u{2028}\u{2029}Aé😀";
        assert_eq!(ev(input), format!("{{ \"a\" {want:?} }}"));
        // YAML 1.2's `\/` is not an escape for go-yaml v2, the kubelet's parser (issue 11).
        assert_eq!(error(r#"a: "x\/y""#).0, SyntaxErrorKind::InvalidEscape);
    }

    #[test]
    fn block_scalars_decode() {
        let table: &[(&str, &str)] = &[
            ("a: |\n  x\n  y\n", "x\ny\n"),
            ("a: |-\n  x\n  y\n", "x\ny"),
            ("a: |+\n  x\n\n\nb: 1", "x\n\n\n"),
            ("a: |\n  x\n\n\nb: 1", "x\n"),
            ("a: >\n  x\n  y\n\n  z\n", "x y\nz\n"),
            ("a: >\n  x\n    more\n  y\n", "x\n  more\ny\n"),
            ("a: >-\n  one\n  two\n", "one two"),
            ("a: |2-\n    indented\n  base\n", "  indented\nbase"),
            ("a: |\n\n  after blank\n", "\nafter blank\n"),
            ("a: |\n  # not a comment\n", "# not a comment\n"),
            ("a: |\n  x", "x"),
            ("a: | # header comment\n  x\n", "x\n"),
            ("- |\n  in seq\n- >\n  folded\n", ""),
        ];
        for (input, want) in table {
            let got = ev(input);
            if want.is_empty() {
                assert_eq!(got, r#"[ "in seq\n" "folded\n" ]"#);
            } else {
                assert_eq!(
                    got,
                    format!(
                        "{{ \"a\" {want:?}{} }}",
                        if input.contains("b: 1") {
                            " \"b\" \"1\""
                        } else {
                            ""
                        }
                    ),
                    "{input:?}"
                );
            }
        }
    }

    #[test]
    fn flow_collections() {
        let table: &[(&str, &str)] = &[
            ("a: [x, y]\n", r#"{ "a" [ "x" "y" ] }"#),
            ("a: [x, y,]\n", r#"{ "a" [ "x" "y" ] }"#),
            (
                "a: {b: 1, c: [2, {d: e}],}\n",
                r#"{ "a" { "b" "1" "c" [ "2" { "d" "e" } ] } }"#,
            ),
            ("a: []\nb: {}\n", r#"{ "a" [ ] "b" { } }"#),
            (
                "a: [\n  x,\n  \"y z\", # c\n  'w'\n]\n",
                r#"{ "a" [ "x" "y z" "w" ] }"#,
            ),
            ("{\"a\":1, b: , c}", r#"{ "a" "1" "b" "" "c" "" }"#),
            ("- [a b, c]\n", r#"[ [ "a b" "c" ] ]"#),
            ("a: [http://x/y]\n", r#"{ "a" [ "http://x/y" ] }"#),
        ];
        for (input, want) in table {
            assert_eq!(ev(input), *want, "{input:?}");
        }
    }

    #[test]
    fn documents_directives_tags_crlf_bom() {
        let table: &[(&str, &str)] = &[
            ("---\na: 1\n...\n", r#"{ "a" "1" }"#),
            (
                "%YAML 1.1\n%TAG ! tag:example.com,2000:\n---\na: 1\n",
                r#"{ "a" "1" }"#,
            ),
            ("--- # c\n---\na: 1\n", r#"{ "a" "1" }"#),
            ("--- |\n  text\n", r#""text\n""#),
            (
                "a: !!str 123\nb: !!int \"12\"\n",
                r#"{ "a" "123" "b" "12" }"#,
            ),
            (
                "a: 1\r\nb:\r\n- x\r\n- 'y\r\n  z'\r\n",
                r#"{ "a" "1" "b" [ "x" "y z" ] }"#,
            ),
            ("a: |\r\n  l1\r\n  l2\r\n", r#"{ "a" "l1\nl2\n" }"#),
            ("\u{feff}a: 1\n", r#"{ "a" "1" }"#),
        ];
        for (input, want) in table {
            assert_eq!(ev(input), *want, "{input:?}");
        }
    }

    #[test]
    fn errors_carry_kind_and_position() {
        let table: &[(&str, (SyntaxErrorKind, u32, u32))] = &[
            ("a:\n\tb: 1\n", (K::TabIndent, 2, 1)),
            ("a:\n  b: 1\n \tc: 2\n", (K::TabIndent, 3, 2)),
            ("a: 1\nb: \"open\n", (K::UnterminatedDoubleQuote, 2, 4)),
            ("a: 'open\n", (K::UnterminatedSingleQuote, 1, 4)),
            ("a: 1\nb: <<\n<<: 2\n", (K::MergeKey, 3, 1)),
            ("a: {<<: 1}\n", (K::MergeKey, 1, 5)),
            ("- << : x\n", (K::MergeKey, 1, 3)),
            ("a: \"ok \\q\"\n", (K::InvalidEscape, 1, 8)),
            ("a: \"\\x4\"\n", (K::InvalidEscape, 1, 5)),
            ("a: \"\\ud800\"\n", (K::InvalidCodePoint, 1, 5)),
            ("a: \"\\U00110000\"\n", (K::InvalidCodePoint, 1, 5)),
            ("a: !foo x\n", (K::UnknownTag, 1, 4)),
            ("a:\n  b: 1\n c: 2\n", (K::BadIndent, 3, 2)),
            ("a: 1\n b: 2\n", (K::ExpectedKey, 2, 3)),
            ("a: 1\n- b\n", (K::MixedBlock, 2, 1)),
            ("- a\nb: 1\n", (K::MixedBlock, 2, 1)),
            ("a: b: c\n", (K::ExpectedKey, 1, 5)),
            ("a: 1\nb\n", (K::ExpectedKey, 2, 1)),
            ("? a\n: b\n", (K::ComplexKey, 1, 1)),
            ("[a]: b\n", (K::ComplexKey, 1, 4)),
            ("a: [x, y\n", (K::UnclosedFlow, 1, 4)),
            ("a: [x}\n", (K::UnclosedFlow, 1, 4)),
            ("a: [x,, y]\n", (K::UnexpectedComma, 1, 7)),
            ("a: [, y]\n", (K::UnexpectedComma, 1, 5)),
            ("a: [x: y]\n", (K::FlowPair, 1, 6)),
            ("a: {b: 1, si\nze: 2}\n", (K::MultiLineKey, 2, 3)),
            ("a: {b\n  : 2}\n", (K::MultiLineKey, 2, 3)),
            ("a: {\"b\nc\": 2}\n", (K::MultiLineKey, 2, 3)),
            ("a: \"x\" y\n", (K::TrailingContent, 1, 8)),
            ("a: [x] y\n", (K::TrailingContent, 1, 8)),
            ("a: |x\n  y\n", (K::BadBlockHeader, 1, 4)),
            ("%YAML 2.0\n---\na: 1\n", (K::BadDirective, 1, 1)),
            ("%YAML 1.1\na: 1\n", (K::DirectiveWithoutStart, 2, 1)),
            ("%YAML 1.1\n# c\n", (K::DirectiveWithoutStart, 3, 1)),
            ("", (K::EmptyDocument, 1, 1)),
            ("# only\n---\n...\n", (K::EmptyDocument, 4, 1)),
            ("a: \u{1}\n", (K::ControlCharacter, 1, 4)),
            ("a: 1\rb: 2\n", (K::ControlCharacter, 1, 5)),
            ("a: - b\n", (K::UnexpectedChar, 1, 4)),
            ("\"a\nb\": 1\n", (K::ExpectedKey, 2, 3)),
            ("a: x\n  c: d\n", (K::ExpectedKey, 2, 4)),
        ];
        for (input, want) in table {
            assert_eq!(error(input), *want, "{input:?}");
        }
    }

    #[cfg(feature = "small")]
    #[test]
    fn the_firmware_build_refuses_anchors_and_aliases() {
        assert_eq!(error("a: &x 1\n"), (K::Anchor, 1, 4));
        assert_eq!(error("a: 1\nb: *x\n"), (K::Alias, 2, 4));
        assert_eq!(error("a: [&x 1]\n"), (K::Anchor, 1, 5));
        assert_eq!(error("a: {k: *x}\n"), (K::Alias, 1, 8));
    }

    #[test]
    fn deep_nesting_is_too_deep_without_stack_overflow() {
        let flow = "[".repeat(10_000);
        assert_eq!(error(&flow).0, K::TooDeep);
        let block = "- ".repeat(10_000) + "x";
        assert_eq!(error(&block).0, K::TooDeep);
        let maps: String = (0..10_000)
            .map(|i| format!("{}k:\n", " ".repeat(i % 200)))
            .collect();
        let _ = first_error_or_end(&maps);
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(events(&mut YamlReader::new(&ok)).is_ok());
        let one_more = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(error(&one_more), (K::TooDeep, 1, MAX_DEPTH as u32 + 1));
    }

    /// libyaml's limit on implicit keys, in block context too (a fuzz finding: keel took a
    /// 16 KB key that go-yaml and serde_yaml refuse with "could not find expected ':'").
    #[test]
    #[cfg(not(feature = "small"))]
    fn a_block_key_ends_within_1024_bytes_of_its_start() {
        for (prefix, col) in [("", 1), ("a:\n  ", 3), ("- ", 3)] {
            let fits = format!("{prefix}{}: 1\n", "k".repeat(1024));
            assert!(events(&mut YamlReader::new(&fits)).is_ok(), "{prefix:?}");
            let long = format!("{prefix}{}: 1\n", "k".repeat(1025));
            let line = prefix.matches('\n').count() as u32 + 1;
            assert_eq!(
                error(&long),
                (K::MultiLineKey, line, col + 1025),
                "{prefix:?}"
            );
            let quoted = format!("{prefix}\"{}\": 1\n", "k".repeat(1023));
            assert_eq!(error(&quoted).0, K::MultiLineKey, "{prefix:?}");
        }
    }

    fn first_error_or_end(input: &str) -> Option<SyntaxErrorKind> {
        events(&mut YamlReader::new(input)).err().map(|e| e.kind)
    }

    #[test]
    fn trailer_counts_further_documents() {
        let table: &[(&str, u16, u32)] = &[
            ("a: 1\n", 0, 0),
            ("a: 1\n---\n", 0, 0),
            ("a: 1\n---\nb: 2\n---\nc: 3\n", 2, 2),
            ("---\na: 1\n--- x\n", 1, 3),
            ("a: 1\n...\nb: 2\n", 1, 3),
            ("a: 1\n---\n# only a comment\n---\nkind: Pod\n", 1, 4),
        ];
        for (input, n, line) in table {
            let mut r = YamlReader::new(input);
            events(&mut r).unwrap();
            let t = r.trailer().unwrap();
            assert_eq!(
                (t.extra_documents, t.first_extra_line),
                (*n, *line),
                "{input:?}"
            );
        }
    }

    #[test]
    fn marks_point_at_first_character() {
        let mut r = YamlReader::new("a:\n  - x\n  - 'y'\n");
        let marks: Vec<(u32, u32)> = (0..6)
            .map(|_| r.next_event().unwrap().1)
            .map(|m| (m.line, m.column))
            .collect();
        assert_eq!(marks, vec![(1, 1), (1, 1), (2, 3), (2, 5), (3, 5), (4, 1)]);
    }

    const KUBECTL_POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  annotations:
    note: \"quoted: value\"
  labels:
    app: web
    tier: \"1\"
  name: web
  namespace: default
spec:
  containers:
  - args:
    - --port=8080
    - --verbose
    command:
    - /bin/server
    env:
    - name: MODE
      value: production
    - name: PORT
      value: \"8080\"
    image: nginx:1.25
    imagePullPolicy: IfNotPresent
    name: web
    ports:
    - containerPort: 8080
      name: http
      protocol: TCP
    resources:
      limits:
        cpu: 500m
        memory: 128Mi
    volumeMounts:
    - mountPath: /data
      name: data
      readOnly: true
  hostNetwork: true
  restartPolicy: Always
  volumes:
  - hostPath:
      path: /srv/data
      type: DirectoryOrCreate
    name: data
";

    fn kubeadm_apiserver() -> String {
        let mut s = String::from(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  annotations:\n    \
             kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.0.0.1:6443\n  \
             creationTimestamp: null\n  labels:\n    component: kube-apiserver\n    tier: \
             control-plane\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  \
             containers:\n  - command:\n    - kube-apiserver\n",
        );
        for i in 0..30 {
            s.push_str(&format!(
                "    - --flag-number-{i}=/etc/kubernetes/pki/value-{i}.crt\n"
            ));
        }
        s.push_str(
            "    image: registry.k8s.io/kube-apiserver:v1.30.0\n    imagePullPolicy: \
             IfNotPresent\n    livenessProbe:\n      failureThreshold: 8\n      httpGet:\n        \
             host: 10.0.0.1\n        path: /livez\n        port: 6443\n        scheme: HTTPS\n      \
             initialDelaySeconds: 10\n    name: kube-apiserver\n    resources:\n      requests:\n        \
             cpu: 250m\n    volumeMounts:\n    - mountPath: /etc/ssl/certs\n      name: ca-certs\n      \
             readOnly: true\n  hostNetwork: true\n  priority: 2000001000\n  priorityClassName: \
             system-node-critical\n  securityContext:\n    seccompProfile:\n      type: \
             RuntimeDefault\n  volumes:\n  - hostPath:\n      path: /etc/ssl/certs\n      type: \
             DirectoryOrCreate\n    name: ca-certs\nstatus: {}\n",
        );
        s
    }

    fn yaml_tree(input: &str) -> Node {
        tree(&mut YamlReader::new(input)).unwrap_or_else(|e| panic!("{input:?}: {e:?}"))
    }

    #[test]
    fn kubectl_pod_and_kubeadm_apiserver_match_serde_yaml() {
        assert_eq!(yaml_tree(KUBECTL_POD), reference(KUBECTL_POD));
        let api = kubeadm_apiserver();
        let t = yaml_tree(&api);
        assert_eq!(t, reference(&api));
        let Node::Map(top) = &t else { panic!() };
        let spec = &top.iter().find(|(k, _)| k == "spec").unwrap().1;
        let Node::Map(spec) = spec else { panic!() };
        let Node::Seq(cs) = &spec.iter().find(|(k, _)| k == "containers").unwrap().1 else {
            panic!()
        };
        let Node::Map(c0) = &cs[0] else { panic!() };
        let Node::Seq(cmd) = &c0.iter().find(|(k, _)| k == "command").unwrap().1 else {
            panic!()
        };
        assert_eq!(cmd.len(), 31);
    }

    /// Documents whose scalars resolve the same in YAML 1.1 (keel, go-yaml v2) and YAML 1.2
    /// (serde_yaml): the shape and every decoded string must agree.
    const CROSS_CHECK: &[&str] = &[
        "a: 1\nb: 1.5\nc: true\nd: null\ne: ~\nf: text\ng:\n",
        "key:\n- a\n- b\nother:\n  - c\n",
        "- name: x\n  image: img\n- name: z\n  args: [a, 'b', \"c\"]\n",
        "a: one\n  two\n\n  three\nb: 'x\n\n  y'\nc: \"p\\\n  q \\t r\"\n",
        "lit: |\n  a\n   b\n\n  c\nfold: >\n  a\n  b\n\n  c\n    d\n  e\nstrip: |-\n  s\n\nkeep: |+\n  k\n\nend: 1\n",
        "ind: |2-\n    two\n  one\n",
        "f: {a: 1, b: [x, z, {c: d}], e: {}, g: [],}\n",
        "a: !!str 123\nb: \"#x\" # c\nc: x#y\n",
        "---\na: 1\n...\n",
        "%YAML 1.1\n---\na: \"\\u00e9\\x41\\U0001F600\\N\"\n",
        "a: 1\r\nb:\r\n- x\r\n- 'y\r\n  z'\r\nc: |\r\n  l1\r\n  l2\r\n",
        "\u{feff}a: 1\n",
        "a: [\n  x,\n  w\n]\nb: {\n  c: 1\n}\n",
        "emptyvals:\n  a:\n  b: ''\n  c: \"\"\n",
        "s: -1\nt: +5\nu: .5\nv: 1e3\nw: -.inf\n",
        "- - a\n  - b\n- - c\n",
        "a: >+\n  x\n\n",
        "a: |\n  x",
        "a:    value   \nb:\t\tv2\t\n",
        "c:\n# between\n- |\n  script\n  line\n\n- >-\n  f\n  g\nd: 1\n",
        "top:\n  list:\n  - a: 1\n    b:\n    - x\n    # comment\n    - z\n  after: 2\n",
        "k: \"tab\\there\"\nq: 'a\"b'\nr: \"a'b\"\n",
        "x: [a, [b, [c, {d: [e]}]]]\n",
        "- {a: 1}\n- [2]\n- 'three'\n",
    ];

    #[test]
    fn events_match_serde_yaml() {
        for input in CROSS_CHECK {
            assert_eq!(yaml_tree(input), reference(input), "{input:?}");
        }
    }

    #[test]
    fn readers_never_panic_or_loop_on_mutated_input() {
        use crate::manifest::json::JsonReader;
        const ALPHABET: &[u8] = b" \t\n\r-:?,[]{}#&*!|>'\"%@`\\.0123456789abyn~+eE";
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let json = r#"{"a": [1, "x\u00e9", {"b": null}], "c": true}"#;
        let corpus = [
            KUBECTL_POD,
            CROSS_CHECK[3],
            CROSS_CHECK[4],
            CROSS_CHECK[6],
            json,
        ];
        for round in 0..3000 {
            let base = corpus[round % corpus.len()];
            let mut bytes: Vec<u8> = base.as_bytes().to_vec();
            for _ in 0..1 + rand() % 4 {
                let at = (rand() as usize) % (bytes.len() + 1);
                let c = ALPHABET[(rand() as usize) % ALPHABET.len()];
                match rand() % 3 {
                    0 if at < bytes.len() => bytes[at] = c,
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, c),
                }
            }
            let Ok(input) = core::str::from_utf8(&bytes) else {
                continue;
            };
            let mut y = YamlReader::new(input);
            let _ = events(&mut y);
            let _ = y.trailer();
            let mut j = JsonReader::new(input);
            let _ = events(&mut j);
            let _ = j.trailer();
        }
    }

    #[test]
    fn reader_never_panics_on_truncations() {
        let docs = [KUBECTL_POD, &kubeadm_apiserver()].concat();
        for end in 0..docs.len() {
            if let Some(prefix) = docs.get(..end) {
                let mut r = YamlReader::new(prefix);
                for _ in 0..10_000 {
                    match r.next_event() {
                        Ok((Event::End, _)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                let _ = r.trailer();
            }
        }
        for input in CROSS_CHECK {
            for end in 0..input.len() {
                if let Some(prefix) = input.get(..end) {
                    let _ = events(&mut YamlReader::new(prefix));
                }
            }
        }
    }
}
