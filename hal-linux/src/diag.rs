//! Diagnostics for people: a manifest error as one compiler-style line.
//!
//! This module deals with the words the agent's log and `keel validate` share for a
//! rejected manifest: `file:line:col: error: path: message`, with the offending value
//! quoted where that helps ("expected a string, got the number 8080; quote it").

use keel_core::manifest::{self, error::ErrorKind, Error, Mark};

/// The token that starts at `mark` (for "got the number 8080").
fn token_at(text: &str, mark: Mark) -> Option<&str> {
    if mark.line == 0 {
        return None;
    }
    let line = text.lines().nth(mark.line as usize - 1)?;
    let start = line
        .char_indices()
        .nth(mark.column as usize - 1)
        .map(|(i, _)| i)?;
    let rest = &line[start..];
    let end = rest
        .find([',', ']', '}', '#', ' ', '\t', '\r'])
        .unwrap_or(rest.len());
    let tok = rest[..end].trim();
    (!tok.is_empty()).then_some(tok)
}

/// The message of an error, with the offending value quoted where that helps.
pub fn message(e: &Error, text: Option<&str>) -> String {
    if let ErrorKind::Type { expected, got } = e.kind {
        let what = match got {
            manifest::error::ValueType::Integer | manifest::error::ValueType::Number => {
                "the number"
            }
            manifest::error::ValueType::Boolean => "the boolean",
            _ => "",
        };
        if let (false, Some(tok)) = (what.is_empty(), text.and_then(|t| token_at(t, e.mark))) {
            let hint = if expected == manifest::error::ValueType::String {
                "; quote it"
            } else {
                ""
            };
            return format!("expected {}, got {what} {tok}{hint}", expected.phrase());
        }
    }
    e.kind.to_string()
}

/// `file:line:col: error: path: message`.
pub fn diagnostic(file: &str, e: &Error, text: Option<&str>) -> String {
    let mut out = String::from(file);
    if e.mark.line > 0 {
        out += &format!(":{}:{}", e.mark.line, e.mark.column);
    }
    out += ": error: ";
    if !e.path.is_root() {
        out += &format!("{}: ", e.path);
    }
    out + &message(e, text)
}
