//! YAML anchors and aliases, expanded by reading the anchored text again.
//!
//! This module deals with `&name` and `*name` for the [`YamlReader`], as go-yaml (the
//! kubelet's decoder) reads them: an alias stands for a copy of the node its anchor names,
//! scalars, sequences and mappings alike; an anchor defined again shadows the earlier one
//! for the aliases after it; an alias inside the node its own anchor names is an error
//! (go-yaml: "anchor value contains itself"), and so is an alias to no anchor.
//!
//! Nothing is allocated and nothing is copied. An anchored scalar is remembered whole (it
//! is a slice of the input). An anchored collection is remembered as the cursor where it
//! starts and the arguments it was read with; an alias to it moves the cursor there, reads
//! the collection again (its events are those of the original, with the original
//! positions) and then returns to just after the alias. Replays nest when the anchored
//! text holds aliases itself, and those resolve to the anchors defined before *them* in
//! the text, as in go-yaml.
//!
//! Every limit is explicit: at most [`MAX_ANCHORS`] anchors, and each alias costs the
//! length in bytes of the node it names, at most [`MAX_ALIAS_BYTES`] for the document. So
//! an alias bomb ("billion laughs") is refused at the alias that crosses the budget, with
//! its line and column, before it is expanded; the reader's work stays linear in the input
//! plus that budget.

use heapless::Vec;

use super::{err, is_ws_or_end, Cursor, Frame, Result, Step, YamlReader};
use crate::config::{MAX_ALIAS_BYTES, MAX_ANCHORS, MAX_DEPTH};
use crate::manifest::event::{Event, Mark, Scalar, SyntaxErrorKind};

/// How to read an anchored collection again.
#[derive(Clone, Copy, Debug)]
pub(super) enum Resume<'a> {
    /// From `cur` (just after the anchor) with `block_node(parent, compact, same_indent_seq)`.
    Block {
        cur: Cursor<'a>,
        parent: i64,
        compact: bool,
        same_indent_seq: bool,
    },
    /// From `cur`, at the `[` or `{` of a collection inside a flow collection.
    Flow { cur: Cursor<'a> },
}

/// An anchor read before the node it names.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pending<'a> {
    name: &'a str,
    /// Byte offset of the `&`.
    at: usize,
    /// Where the `&` is: in `&a key: value` on one line, the anchor names the key.
    mark: Mark,
    /// Set where the node is known to be block or flow.
    resume: Option<Resume<'a>>,
}

#[derive(Clone, Copy, Debug)]
enum Node<'a> {
    Scalar(Scalar<'a>),
    Collection {
        resume: Resume<'a>,
        /// Open frames outside the collection: it is complete when the stack is back here.
        depth: usize,
        /// Byte offset where the collection's text starts.
        start: usize,
        /// Length of its text, once it is complete.
        len: Option<usize>,
    },
}

#[derive(Clone, Copy, Debug)]
struct Anchor<'a> {
    name: &'a str,
    at: usize,
    node: Node<'a>,
}

/// A collection being read again for an alias.
#[derive(Clone, Copy, Debug)]
struct Replay<'a> {
    /// Where reading goes on when the collection is complete (just after the alias).
    back: Cursor<'a>,
    /// Open frames outside the replayed collection.
    base: usize,
    /// Where the alias is.
    mark: Mark,
}

/// The anchors of a document and the replays in progress.
#[derive(Debug)]
pub(super) struct Aliases<'a> {
    pub(super) pending: Option<Pending<'a>>,
    table: Vec<Anchor<'a>, MAX_ANCHORS>,
    /// Each nested replay sits inside at least one more open collection than the one
    /// around it, so there are never more than [`MAX_DEPTH`].
    replays: Vec<Replay<'a>, MAX_DEPTH>,
    /// Bytes of expansion so far (see [`MAX_ALIAS_BYTES`]).
    spent: usize,
}

impl<'a> Aliases<'a> {
    pub(super) const fn new() -> Self {
        Aliases {
            pending: None,
            table: Vec::new(),
            replays: Vec::new(),
            spent: 0,
        }
    }

    /// Open frames outside the innermost replayed collection, if one is being read.
    pub(super) fn replay_base(&self) -> Option<usize> {
        self.replays.last().map(|r| r.base)
    }

    /// The latest anchor called `name` defined before byte `at`.
    fn find(&self, name: &str, at: usize) -> Option<Node<'a>> {
        self.table
            .iter()
            .rev()
            .find(|a| a.at < at && a.name == name)
            .map(|a| a.node)
    }
}

/// libyaml's anchor characters (go-yaml is a port of it): ASCII letters, digits, `_`, `-`.
fn is_anchor_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
}

impl<'a> YamlReader<'a> {
    /// At a `&` or `*`: reads the name after it (as libyaml: at least one anchor character,
    /// then a blank, a line end or one of `?:,]}%@` and a backtick).
    fn anchor_name(&mut self) -> Result<&'a str> {
        let mark = self.cur.mark();
        self.cur.bump();
        let start = self.cur.pos;
        while self.cur.peek().is_some_and(is_anchor_char) {
            self.cur.bump();
        }
        let ends = is_ws_or_end(self.cur.peek())
            || matches!(
                self.cur.peek(),
                Some(b'?' | b':' | b',' | b']' | b'}' | b'%' | b'@' | b'`')
            );
        if self.cur.pos == start || !ends {
            return Err(err(SyntaxErrorKind::UnexpectedChar, mark));
        }
        Ok(self.cur.slice(start, self.cur.pos))
    }

    /// At a `&`: reads the anchor for the node that follows. `resume` says how to read that
    /// node again when it is a collection (`None`: it can only be a scalar, or it is inside
    /// a flow collection and the `[`/`{` will say).
    pub(super) fn read_anchor(
        &mut self,
        resume: impl FnOnce(Cursor<'a>) -> Option<Resume<'a>>,
    ) -> Result<()> {
        let (mark, at) = (self.cur.mark(), self.cur.pos);
        if self.aliases.pending.is_some() {
            // Two anchors on one node.
            return Err(self.cur.err(SyntaxErrorKind::UnexpectedChar));
        }
        let name = self.anchor_name()?;
        self.aliases.pending = Some(Pending {
            name,
            at,
            mark,
            resume: resume(self.cur),
        });
        Ok(())
    }

    /// Inside a flow collection, at the `[` or `{` of a node that may be anchored.
    pub(super) fn note_flow_start(&mut self) {
        if let Some(p) = &mut self.aliases.pending {
            if p.resume.is_none() {
                p.resume = Some(Resume::Flow { cur: self.cur });
            }
        }
    }

    /// At a `*`: reads the alias name. An alias takes no tag and no anchor of its own.
    fn alias_name(&mut self, tagged: bool) -> Result<(&'a str, usize, Mark)> {
        let (mark, at) = (self.cur.mark(), self.cur.pos);
        if tagged || self.aliases.pending.is_some() {
            return Err(err(SyntaxErrorKind::UnexpectedChar, mark));
        }
        let name = self.anchor_name()?;
        Ok((name, at, mark))
    }

    /// Charges `cost` bytes of expansion to the budget. Past it, the error points at the
    /// alias in the document as written (the outermost one being expanded), not at one
    /// met while reading an anchored node again.
    fn charge(&mut self, cost: usize, mark: Mark) -> Result<()> {
        self.aliases.spent = self.aliases.spent.saturating_add(cost.max(1));
        if self.aliases.spent > MAX_ALIAS_BYTES {
            let outer = self.aliases.replays.first().map_or(mark, |r| r.mark);
            return Err(err(SyntaxErrorKind::AliasBudget, outer));
        }
        Ok(())
    }

    /// The anchor an alias at byte `at` names.
    fn resolve(&self, name: &str, at: usize, mark: Mark) -> Result<Node<'a>> {
        self.aliases
            .find(name, at)
            .ok_or(err(SyntaxErrorKind::UndefinedAlias, mark))
    }

    /// An alias used as a mapping key: it must name a scalar. Returns the scalar and where
    /// the alias is.
    pub(super) fn alias_key(&mut self, tagged: bool) -> Result<(Scalar<'a>, Mark)> {
        let (name, at, mark) = self.alias_name(tagged)?;
        match self.resolve(name, at, mark)? {
            Node::Scalar(s) => {
                self.charge(s.raw.len(), mark)?;
                Ok((s, mark))
            }
            Node::Collection { .. } => Err(err(SyntaxErrorKind::ComplexKey, mark)),
        }
    }

    /// An alias as a node in block context (cursor at `*`): the node it names, or, when a
    /// `:` follows on the line, a mapping whose first key it is. `parent` and `block_ok` as
    /// in [`YamlReader::block_node`].
    pub(super) fn block_alias(&mut self, tagged: bool, block_ok: bool) -> Step<'a> {
        let start = self.cur;
        let (name, at, mark) = self.alias_name(tagged)?;
        let save = self.cur;
        self.skip_blanks();
        if self.cur.peek() == Some(b':') && is_ws_or_end(self.cur.peek_at(1)) {
            if !block_ok {
                return Err(self.cur.err(SyntaxErrorKind::ExpectedKey));
            }
            self.cur = start;
            let (key, _) = self.alias_key(false)?;
            self.skip_blanks();
            self.cur.bump();
            self.push(
                Frame::Map {
                    indent: self.col_of(mark),
                    value: true,
                },
                mark,
            )?;
            self.pending = Some((Event::Scalar(key), key.mark));
            return Ok((Event::MapStart, mark));
        }
        self.cur = save;
        self.expect_eol()?;
        self.expand(name, at, mark)
    }

    /// An alias as a node inside a flow collection (cursor at `*`).
    pub(super) fn flow_alias(&mut self, tagged: bool, key: bool) -> Step<'a> {
        if key {
            let (key, mark) = self.alias_key(tagged)?;
            return Ok((Event::Scalar(key), mark));
        }
        let (name, at, mark) = self.alias_name(tagged)?;
        self.expand(name, at, mark)
    }

    /// The first event of the node an alias names; a collection is then read again to its
    /// end before reading goes on after the alias (the cursor is just after it now).
    fn expand(&mut self, name: &str, at: usize, mark: Mark) -> Step<'a> {
        match self.resolve(name, at, mark)? {
            Node::Scalar(s) => {
                self.charge(s.raw.len(), mark)?;
                Ok((Event::Scalar(s), s.mark))
            }
            Node::Collection { len: None, .. } => Err(err(SyntaxErrorKind::AliasCycle, mark)),
            Node::Collection {
                resume,
                len: Some(len),
                ..
            } => {
                self.charge(len, mark)?;
                let replay = Replay {
                    back: self.cur,
                    base: self.stack.len(),
                    mark,
                };
                self.aliases
                    .replays
                    .push(replay)
                    .map_err(|_| err(SyntaxErrorKind::TooDeep, mark))?;
                match resume {
                    Resume::Block {
                        cur,
                        parent,
                        compact,
                        same_indent_seq,
                    } => {
                        self.cur = cur;
                        self.block_node(parent, compact, same_indent_seq, mark)
                    }
                    Resume::Flow { cur } => {
                        self.cur = cur;
                        self.open_flow(cur.peek() == Some(b'['))
                    }
                }
            }
        }
    }

    /// Before reading on: when the replayed collection is complete, returns to just after
    /// its alias.
    pub(super) fn end_replay(&mut self) {
        if let Some(r) = self.aliases.replays.last() {
            if self.stack.len() == r.base {
                self.cur = r.back;
                self.aliases.replays.pop();
            }
        }
    }

    /// After each event: records the node a pending anchor names, and completes anchored
    /// collections as they close. Anchors met while a collection is read again were
    /// recorded the first time.
    pub(super) fn note_event(&mut self, ev: &Event<'a>) -> Result<()> {
        if self.aliases.pending.is_none() && self.aliases.table.is_empty() {
            return Ok(());
        }
        let replaying = !self.aliases.replays.is_empty();
        if let Some(p) = self.aliases.pending.take() {
            let node = match ev {
                Event::Scalar(s) => Some(Node::Scalar(*s)),
                // `&a key: value` on one line: the anchor names the key.
                Event::MapStart => match self.pending {
                    Some((Event::Scalar(k), _)) if k.mark.line == p.mark.line => {
                        Some(Node::Scalar(k))
                    }
                    _ => p.resume.map(|resume| collection(resume, self.stack.len())),
                },
                Event::SeqStart => p.resume.map(|resume| collection(resume, self.stack.len())),
                _ => None,
            };
            if let (Some(node), false) = (node, replaying) {
                let anchor = Anchor {
                    name: p.name,
                    at: p.at,
                    node,
                };
                if self.aliases.table.push(anchor).is_err() {
                    return Err(err(SyntaxErrorKind::TooManyAnchors, p.mark));
                }
            }
        }
        if matches!(ev, Event::MapEnd | Event::SeqEnd) && !replaying {
            let (depth, pos) = (self.stack.len(), self.cur.pos);
            for a in self.aliases.table.iter_mut().rev() {
                if let Node::Collection {
                    depth: d,
                    start,
                    len: len @ None,
                    ..
                } = &mut a.node
                {
                    if *d == depth {
                        *len = Some(pos.saturating_sub(*start));
                    }
                }
            }
        }
        Ok(())
    }
}

/// An anchored collection whose start event was just read (its frame is on the stack).
fn collection(resume: Resume<'_>, stack_len: usize) -> Node<'_> {
    let cur = match resume {
        Resume::Block { cur, .. } | Resume::Flow { cur } => cur,
    };
    Node::Collection {
        resume,
        depth: stack_len.saturating_sub(1),
        start: cur.pos,
        len: None,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;
    use std::string::String;

    use super::super::test_support::{events, first_error, reference, tree};
    use super::*;
    use crate::manifest::event::Events;
    use SyntaxErrorKind as K;

    fn error(input: &str) -> (SyntaxErrorKind, u32, u32) {
        first_error(&mut YamlReader::new(input))
    }

    /// The error of a document that may expand to many events before it fails.
    fn error_within(input: &str, max_events: usize) -> (SyntaxErrorKind, u32, u32) {
        let mut r = YamlReader::new(input);
        for _ in 0..max_events {
            match r.next_event() {
                Err(e) => return (e.kind, e.mark.line, e.mark.column),
                Ok((Event::End, _)) => panic!("no error"),
                Ok(_) => {}
            }
        }
        panic!("no error after {max_events} events");
    }

    /// Documents with anchors and aliases: keel's expansion must equal serde_yaml's (which
    /// expands aliases as go-yaml does).
    const EXPANDED_AS_SERDE_YAML: &[&str] = &[
        "a: &x 1\nb: *x\n",
        "a: &x hello world\nb: [*x, *x]\nc: {k: *x}\n",
        "base: &b\n  x: 1\n  y: [2, 3]\nuse: *b\nafter: 1\n",
        "a: &x\n- 1\n- 2\nb: *x\nc:\n  - *x\nd: 3\n",
        "a: &x\n  - p\n  - q\nlist:\n  - *x\n  - [*x]\n",
        "a: [&x [1, 2], *x]\nb: *x\n",
        "a: {k: &m {z: 1}, j: *m}\nb: *m\n",
        "a: &a [1]\nb: &b {x: *a, y: *a}\nc: [*b, *b]\n",
        "a: &y 1\nx: &x [*y]\nc: &y 2\nd: *x\ne: *y\n",
        "a: &y 1\nx: &x\n  k: *y\nc: &y 2\nd: *x\ne: *y\n",
        "&k name: v\nother: *k\n",
        "a: &k key\n*k : v\n",
        "a: &k key\n*k: v\n",
        "a: &x\nb: *x\n",
        "a: &x !!str 12\nb: *x\n",
        "a: !!str &x 12\nb: *x\n",
        "- &e {name: a}\n- *e\n",
        "- &m a: 1\n  b: 2\n- *m\n",
        "- &m\n  a: 1\n  b: 2\n- *m\n",
        "a: &s |\n  line1\n  line2\nb: *s\n",
        "a: &s >-\n  folded\n  text\nb: [*s]\n",
        "a: &x\n  k: v\nb: [*x, {c: *x}]\n",
        "a: &x # comment\n  k: v\nb: *x # comment\n",
        "a: &x [1]\nb: *x\n",
        "a: &x {p: [1, {q: r}]}\nb:\n  c: *x\n  d:\n  - *x\n",
        "a: &long-name_1 v\nb: *long-name_1\n",
        "a: [&x 1, *x, &y , *y]\n",
        "a: {&k key: &v val, other: *v}\nb: {*k : again}\n",
        "- &s\n  - &t\n    - x\n  - *t\n- *s\n- *t\n",
        "a: &x\n  - b: 1\n    c:\n    - 2\n  - d\ne: *x\n",
        "spec:\n  containers:\n  - &c\n    name: a\n    env: &env\n    - name: X\n      value: \"1\"\n  - name: b\n    env: *env\n",
    ];

    #[test]
    fn aliases_expand_like_serde_yaml() {
        for input in EXPANDED_AS_SERDE_YAML {
            let got =
                tree(&mut YamlReader::new(input)).unwrap_or_else(|e| panic!("{input:?}: {e:?}"));
            assert_eq!(got, reference(input), "{input:?}");
        }
    }

    /// A redefined anchor followed by a new one: serde_yaml 0.9 gives the new one's node to
    /// the alias (it numbers a redefinition like the next new anchor); go-yaml, as keel,
    /// the latest definition before the alias.
    #[test]
    fn an_alias_takes_the_latest_definition_before_it() {
        let got = events(&mut YamlReader::new(
            "a: &x 1\nb: &x 2\nc: &y 3\nd: *x\ne: *y\n",
        ));
        assert_eq!(
            got.unwrap(),
            r#"{ "a" "1" "b" "2" "c" "3" "d" "2" "e" "3" }"#
        );
    }

    #[test]
    fn an_alias_repeats_the_anchored_events_with_their_positions() {
        let mut r = YamlReader::new("a: &x [1, 2]\nb: *x\n");
        let marks: std::vec::Vec<(u32, u32)> = (0..12)
            .map(|_| r.next_event().unwrap().1)
            .map(|m| (m.line, m.column))
            .collect();
        // { a [ 1 2 ] b [ 1 2 ] } End: the copy points at the original.
        assert_eq!(
            marks,
            [
                (1, 1),
                (1, 1),
                (1, 7),
                (1, 8),
                (1, 11),
                (1, 12),
                (2, 1),
                (1, 7),
                (1, 8),
                (1, 11),
                (1, 12),
                (3, 1)
            ]
        );
    }

    #[test]
    fn alias_errors_carry_kind_and_position() {
        let table: &[(&str, (SyntaxErrorKind, u32, u32))] = &[
            ("a: *x\n", (K::UndefinedAlias, 1, 4)),
            ("a: *x\nb: &x 1\n", (K::UndefinedAlias, 1, 4)),
            ("a: [*x]\n", (K::UndefinedAlias, 1, 5)),
            ("a: &x\n  b: *x\n", (K::AliasCycle, 2, 6)),
            ("a: &x [1, *x]\n", (K::AliasCycle, 1, 11)),
            ("&x\na: [*x]\n", (K::AliasCycle, 2, 5)),
            ("a: &x 1\nb: &y *x\n", (K::UnexpectedChar, 2, 7)),
            ("a: &x 1\nb: !!str *x\n", (K::UnexpectedChar, 2, 10)),
            ("a: &x &y 1\n", (K::UnexpectedChar, 1, 7)),
            ("a: & x\n", (K::UnexpectedChar, 1, 4)),
            ("a: *\n", (K::UnexpectedChar, 1, 4)),
            ("a: &x{ 1\n", (K::UnexpectedChar, 1, 4)),
            ("a: &x [1]\n*x : 2\n", (K::ComplexKey, 2, 1)),
            ("a: &x [1]\nb: {*x : 2}\n", (K::ComplexKey, 2, 5)),
            ("a: &x {k: 1}\nb:\n  <<: *x\n", (K::MergeKey, 3, 3)),
        ];
        for (input, want) in table {
            assert_eq!(error(input), *want, "{input:?}");
        }
    }

    #[test]
    fn too_many_anchors_is_a_capacity_error_at_the_first_one_over() {
        let doc: String = (0..=MAX_ANCHORS)
            .map(|i| format!("k{i}: &a{i} v\n"))
            .collect();
        assert_eq!(error(&doc), (K::TooManyAnchors, MAX_ANCHORS as u32 + 1, 6));
        let fits: String = (0..MAX_ANCHORS)
            .map(|i| format!("k{i}: &a{i} v\n"))
            .collect();
        assert!(events(&mut YamlReader::new(&fits)).is_ok());
    }

    /// Ten aliases of the level above, nine levels deep: 10^9 nodes if expanded. Refused at
    /// the alias that crosses the budget, after at most that budget's work.
    #[test]
    fn an_alias_bomb_is_refused_before_it_is_expanded() {
        let mut doc = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            let list = [prev.as_str(); 10].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{list}]\n"));
        }
        // Each alias costs the bytes it expands to (nested aliases are charged as they are
        // read again): level 4 is 10^4 copies of level 0's 51 bytes (510 KB), level 5 ten
        // times that: refused at level 5 (line 6), at the alias as written.
        let (kind, line, col) = error_within(&doc, 4 * MAX_ALIAS_BYTES);
        assert_eq!(kind, K::AliasBudget);
        assert_eq!(line, 6);
        let at = doc.lines().nth(5).unwrap().get(col as usize - 1..).unwrap();
        assert!(at.starts_with("*a4"), "{at}");
        // The same bomb made of block mappings.
        let mut doc = String::from("l0: &l0\n  x: lol\n");
        for i in 1..12 {
            doc.push_str(&format!("l{i}: &l{i}\n"));
            for j in 0..10 {
                doc.push_str(&format!("  k{j}: *l{}\n", i - 1));
            }
        }
        assert_eq!(error_within(&doc, 4 * MAX_ALIAS_BYTES).0, K::AliasBudget);
    }

    #[test]
    fn the_budget_is_exact_in_bytes_of_the_named_nodes() {
        let doc = |n: usize| {
            let big = "x".repeat(1024);
            let aliases = ["*a"; 2048][..n].join(", ");
            format!("a: &a {big}\nb: [{aliases}]\n")
        };
        let fill = MAX_ALIAS_BYTES / 1024;
        assert!(events(&mut YamlReader::new(&doc(fill))).is_ok());
        let (kind, line, col) = error(&doc(fill + 1));
        assert_eq!((kind, line), (K::AliasBudget, 2));
        assert_eq!(col as usize, 5 + 4 * fill);
    }

    /// Mutated documents with anchors and aliases: never a panic, and the reader ends within
    /// four events per byte of input plus budget.
    #[test]
    fn mutated_aliases_never_panic_or_loop() {
        const ALPHABET: &[u8] = b" \n-:,[]{}&*!|>'\"#abkx12";
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..4000 {
            let base = EXPANDED_AS_SERDE_YAML[round % EXPANDED_AS_SERDE_YAML.len()];
            let mut bytes: std::vec::Vec<u8> = base.as_bytes().to_vec();
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
            let mut r = YamlReader::new(input);
            let mut ended = false;
            for _ in 0..4 * (input.len() + MAX_ALIAS_BYTES) + 16 {
                match r.next_event() {
                    Ok((Event::End, _)) | Err(_) => {
                        ended = true;
                        break;
                    }
                    Ok(_) => {}
                }
            }
            assert!(ended, "{input:?} did not end");
            let _ = r.trailer();
        }
    }

    #[test]
    fn the_messages_name_the_capacities() {
        assert!(K::AliasBudget.message().contains("MAX_ALIAS_BYTES"));
        assert!(K::TooManyAnchors.message().contains("MAX_ANCHORS"));
        assert_eq!(MAX_ALIAS_BYTES, 1 << 20, "AliasBudget's message says 1 MiB");
    }
}
