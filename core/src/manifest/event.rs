//! The format-neutral pull interface between the readers and the decoder.
//!
//! This module deals with the contract between the two syntax readers (YAML in
//! [`super::yaml`], JSON in [`super::json`]) and the Pod decoder. A reader turns bytes into a
//! flat stream of [`Event`]s for the *first* document of its input, never recursing and never
//! allocating: nesting is tracked on an explicit stack of [`crate::config::MAX_DEPTH`]
//! levels, so deep input fails with [`SyntaxErrorKind::TooDeep`] instead of exhausting a
//! firmware stack. Scalars are lent as raw source slices plus what is needed to decode them
//! ([`Scalar`]); the decoder copies decoded text only into the pod's string pool.
//!
//! Contract of every [`Events`] implementation:
//! - `next` yields exactly one well-nested node: a scalar, or a `MapStart … MapEnd` /
//!   `SeqStart … SeqEnd` group whose mapping entries alternate key node, value node. Then it
//!   yields [`Event::End`] (and keeps yielding `End`).
//! - Mapping keys are scalars (a collection as key is a syntax error). Duplicate keys are not
//!   the reader's concern: the decoder detects them.
//! - Every event and error carries the [`Mark`] of its first character.
//! - Malformed input gives `Err(SyntaxError)`; after an error, further calls may return
//!   anything but must not panic or loop forever.

use serde::{Deserialize, Serialize};

/// A position in the input: 1-based line and column (column counted in characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Mark {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

/// How a scalar was written; decides how its raw text decodes and how it resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarStyle {
    /// YAML plain scalar (may span lines: folded on decode).
    Plain,
    /// YAML `'...'`.
    SingleQuoted,
    /// YAML `"..."`.
    DoubleQuoted,
    /// YAML `|` block scalar.
    Literal,
    /// YAML `>` block scalar.
    Folded,
    /// JSON string.
    JsonString,
    /// JSON number, `true`, `false` or `null`.
    JsonLiteral,
}

/// Block-scalar chomping (`|-`, `|`, `|+`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chomp {
    /// `-`: no final line break.
    Strip,
    /// default: one final line break.
    Clip,
    /// `+`: all trailing line breaks.
    Keep,
}

/// A standard YAML tag given explicitly (`!!str`, `!!int`, ...). Other tags are syntax
/// errors ([`SyntaxErrorKind::UnknownTag`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// `!!str`
    Str,
    /// `!!int`
    Int,
    /// `!!float`
    Float,
    /// `!!bool`
    Bool,
    /// `!!null`
    Null,
    /// `!!map`
    Map,
    /// `!!seq`
    Seq,
    /// `!!binary` (kept as text)
    Binary,
    /// `!!timestamp` (kept as text)
    Timestamp,
}

/// What a scalar means in the data model, once resolved (YAML 1.1 rules as go-yaml v2
/// applies them to plain scalars; JSON literals; explicit tags).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resolved {
    /// `~`, `null`, `Null`, `NULL`, empty plain scalar; JSON `null`.
    Null,
    /// `true/false/yes/no/on/off/y/n` in their YAML 1.1 spellings; JSON `true`/`false`.
    Bool(bool),
    /// Decimal, `0o`/leading-zero octal, `0x` hex, `0b` binary, `_` separators, sign.
    Int(i64),
    /// Floats including `.inf`, `.nan`, `1e3`: classified by syntax only (no model field
    /// takes a float, so only the type is needed, for error messages; quantities have their
    /// own exact parser). Keeps float parsing out of firmware.
    Float,
    /// Anything else: a string (decode it with [`Scalar::write_to`]).
    Str,
}

/// A scalar lent from the input.
#[derive(Clone, Copy, Debug)]
pub struct Scalar<'a> {
    /// The exact source text: for quoted scalars the text between the quotes; for block
    /// scalars the body (the lines after the header); for plain scalars the text from the
    /// first to the last non-blank character, possibly spanning lines.
    pub raw: &'a str,
    /// How it was written.
    pub style: ScalarStyle,
    /// Explicit tag, if any.
    pub tag: Option<Tag>,
    /// Block scalars: chomping.
    pub chomp: Chomp,
    /// Block scalars: the content indentation in columns (explicit indicator or detected).
    pub indent: u16,
    /// Where the scalar (its first character, or its quote or indicator) starts.
    pub mark: Mark,
}

/// Receives decoded scalar text piece by piece.
pub trait TextSink {
    /// Error when the sink is full.
    type Error;
    /// Appends a piece of decoded text.
    fn push_str(&mut self, s: &str) -> Result<(), Self::Error>;
}

/// One pull event.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// Start of a mapping.
    MapStart,
    /// End of the innermost mapping.
    MapEnd,
    /// Start of a sequence.
    SeqStart,
    /// End of the innermost sequence.
    SeqEnd,
    /// A scalar.
    Scalar(Scalar<'a>),
    /// The first document's root node is complete.
    End,
}

/// What follows the first document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trailer {
    /// Number of further (ignored) documents in the stream (SPEC 1.9).
    pub extra_documents: u16,
    /// Line where the first ignored document starts (0 when none).
    pub first_extra_line: u32,
}

/// Why the syntax was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SyntaxErrorKind {
    /// The input is not UTF-8.
    InvalidUtf8,
    /// Input ended inside a node.
    UnexpectedEnd,
    /// The input holds no document (empty, only comments or markers).
    EmptyDocument,
    /// A tab character used for indentation.
    TabIndent,
    /// Indentation that fits no open block.
    BadIndent,
    /// A `"` scalar without its closing quote.
    UnterminatedDoubleQuote,
    /// A `'` scalar without its closing quote.
    UnterminatedSingleQuote,
    /// An unknown or malformed `\` escape.
    InvalidEscape,
    /// An escape naming a code point that is not a character (lone surrogate, > 0x10FFFF).
    InvalidCodePoint,
    /// `&anchor` in the firmware build (`small`), which does not expand aliases.
    Anchor,
    /// `*alias` in the firmware build (`small`), which does not expand aliases.
    Alias,
    /// A tag other than the standard `!!` ones.
    UnknownTag,
    /// A block-scalar header that cannot be read.
    BadBlockHeader,
    /// A `key: value` where one was not expected, or a key without `:`.
    ExpectedKey,
    /// A mapping value where a sequence entry was expected or vice versa.
    MixedBlock,
    /// A collection used as a mapping key.
    ComplexKey,
    /// Text after a complete node that belongs nowhere.
    TrailingContent,
    /// A flow collection not closed, or closed by the wrong bracket.
    UnclosedFlow,
    /// A `,` where none may stand (JSON trailing comma, `[,`).
    UnexpectedComma,
    /// A character that cannot start or continue a token here.
    UnexpectedChar,
    /// Nesting deeper than [`crate::config::MAX_DEPTH`].
    TooDeep,
    /// A `%` directive other than `%YAML 1.x` / `%TAG`.
    BadDirective,
    /// A directive not followed by a `---` line.
    DirectiveWithoutStart,
    /// An explicit `!!int`/`!!float`/`!!bool`/`!!null` tag on text of another type.
    TagMismatch,
    /// JSON: a comment (`//`, `/*`, `#`).
    JsonComment,
    /// JSON: malformed number.
    JsonNumber,
    /// A control character where none may stand: unescaped in a JSON string, or anywhere
    /// in YAML (other than tab and line breaks; a CR must be followed by LF).
    ControlCharacter,
    /// YAML: a single-pair mapping inside a flow sequence (`[a: b]`), not supported.
    FlowPair,
    /// YAML: a mapping key inside `{ }` whose `:` is on a later line or over 1024 bytes
    /// on (libyaml's implicit-key rule).
    MultiLineKey,
    /// YAML: a `<<` merge key. go-yaml v2 merges the named mapping into this one; keel does
    /// not (SPEC 2.2), and says so rather than reading `<<` as an unknown field.
    MergeKey,
    /// YAML: `*name` names no anchor defined before it.
    #[cfg(not(feature = "small"))]
    UndefinedAlias,
    /// YAML: `*name` inside the node its anchor names (it would contain itself).
    #[cfg(not(feature = "small"))]
    AliasCycle,
    /// YAML: more anchors than [`crate::config::MAX_ANCHORS`].
    #[cfg(not(feature = "small"))]
    TooManyAnchors,
    /// YAML: aliases that would expand to more than [`crate::config::MAX_ALIAS_BYTES`] of
    /// text (an "alias bomb"); refused before expanding.
    #[cfg(not(feature = "small"))]
    AliasBudget,
}

impl SyntaxErrorKind {
    /// A one-line description for people.
    pub const fn message(self) -> &'static str {
        use SyntaxErrorKind::*;
        match self {
            InvalidUtf8 => "the file is not valid UTF-8",
            UnexpectedEnd => "unexpected end of input",
            EmptyDocument => "the file holds no document",
            TabIndent => "tab character used for indentation (YAML allows only spaces)",
            BadIndent => "indentation does not match any enclosing block",
            UnterminatedDoubleQuote => "unterminated double-quoted string (missing closing \")",
            UnterminatedSingleQuote => "unterminated single-quoted string (missing closing ')",
            InvalidEscape => "invalid escape sequence",
            InvalidCodePoint => "escape names an invalid Unicode code point",
            Anchor => "YAML anchors (&) are not supported by the firmware build",
            Alias => "YAML aliases (*) are not supported by the firmware build",
            UnknownTag => "unknown tag (only the standard !! tags are allowed)",
            BadBlockHeader => "malformed block scalar header",
            ExpectedKey => "expected a mapping key",
            MixedBlock => "mapping and sequence entries mixed at one level",
            ComplexKey => "a mapping key must be a scalar",
            TrailingContent => "unexpected content after the value",
            UnclosedFlow => "unclosed or mismatched [ ] or { }",
            UnexpectedComma => "unexpected comma",
            UnexpectedChar => "unexpected character",
            TooDeep => "nesting too deep",
            BadDirective => "unsupported directive",
            DirectiveWithoutStart => "a %YAML or %TAG directive must be followed by a --- line",
            TagMismatch => "the value does not match its explicit tag (like !!int on text that is not an integer)",
            JsonComment => "comments are not allowed in JSON",
            JsonNumber => "malformed JSON number",
            ControlCharacter => "control character not allowed here",
            FlowPair => {
                "a `key: value` pair inside [ ] is not supported; use { } or a block mapping"
            }
            // The firmware checks only keys inside `{ }` (its flash budget): its text says so.
            MultiLineKey if cfg!(feature = "small") => {
                "a mapping key inside { } must stand on one line with its `:`"
            }
            MultiLineKey => {
                "a mapping key must stand on one line with its `:`, within 1024 bytes of its start"
            }
            MergeKey => "YAML merge keys (<<) are not supported; write the keys out",
            #[cfg(not(feature = "small"))]
            UndefinedAlias => "alias (*) names no anchor (&) defined before it",
            #[cfg(not(feature = "small"))]
            AliasCycle => "alias (*) inside the node its anchor names (it would contain itself)",
            #[cfg(not(feature = "small"))]
            TooManyAnchors => "capacity MAX_ANCHORS exceeded: too many anchors (&) in one document",
            #[cfg(not(feature = "small"))]
            AliasBudget => {
                "capacity MAX_ALIAS_BYTES exceeded: the aliases (*) would expand to more than 1 MiB (an alias bomb?)"
            }
        }
    }
}

/// A syntax error and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SyntaxError {
    /// What is wrong.
    pub kind: SyntaxErrorKind,
    /// Where.
    pub mark: Mark,
}

/// A pull reader of one document.
pub trait Events<'a> {
    /// The next event; see the module docs for the contract.
    fn next_event(&mut self) -> Result<(Event<'a>, Mark), SyntaxError>;
    /// Called after [`Event::End`]: reports further documents (YAML `---`, a second JSON
    /// value) without decoding them, or a syntax error in what follows the first document
    /// when that makes the file ambiguous.
    fn trailer(&mut self) -> Result<Trailer, SyntaxError>;
}
