//! kubectl's JSONPath templates, for `keel pods -o jsonpath=TEMPLATE`.
//!
//! This module deals with the template language `kubectl get -o jsonpath=` speaks, so the
//! one-liners operators already have work against keel: text with `{…}` expressions,
//! where an expression is a path (`{.items[*].metadata.name}`, `{.items[0].status.phase}`,
//! `{$.kind}`, `{@.name}`), a string literal (`{"\n"}`, `{"\t"}`), or `{range PATH}…{end}`
//! repeating its body for every match with paths relative to it. Path steps: `.field`,
//! `['field']`, `[N]` (negative counts from the end), `[*]` and `.*`, `..field` (every
//! `field` below), and filters `[?(@.name=="main")]`, `[?(@.x!=1)]`, `[?(@.ready)]`.
//! Several matches print separated by spaces; strings print bare, anything else as
//! compact JSON. A missing field prints nothing, as kubectl does without
//! `--allow-missing-template-keys=false`.

use serde_json::Value;

/// A parse error in a template, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Descend(String),
    Filter {
        path: Vec<Step>,
        test: Option<(bool, Value)>,
    },
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Piece>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Piece>);

fn err<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError(msg.into()))
}

fn literal(s: &str) -> Result<String, TemplateError> {
    serde_json::from_str::<String>(s).or_else(|_| err(format!("bad string literal {s}")))
}

fn scalar(s: &str) -> Result<Value, TemplateError> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return Ok(Value::String(inner.to_string()));
    }
    serde_json::from_slice(s.as_bytes()).or_else(|_| err(format!("bad value {s} in a filter")))
}

/// Parses a path such as `.items[*].metadata.name`.
fn path(src: &str) -> Result<Vec<Step>, TemplateError> {
    let b = src.trim();
    let mut rest = b
        .strip_prefix('$')
        .or_else(|| b.strip_prefix('@'))
        .unwrap_or(b);
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("..") {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return err(format!("{src}: '..' needs a field name"));
            }
            steps.push(Step::Descend(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            match &r[..end] {
                "" if r.is_empty() => {}
                "" => {}
                "*" => steps.push(Step::All),
                f => steps.push(Step::Field(f.to_string())),
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = if r.starts_with("?(") {
                r.find(")]").map(|i| i + 1)
            } else {
                r.find(']')
            };
            let Some(close) = close else {
                return err(format!("{src}: '[' without ']'"));
            };
            let inner = r[..close].trim();
            rest = &r[close + 1..];
            if inner == "*" {
                steps.push(Step::All);
            } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                let (lhs, test) = if let Some((l, v)) = f.split_once("!=") {
                    (l, Some((false, scalar(v)?)))
                } else if let Some((l, v)) = f.split_once("==") {
                    (l, Some((true, scalar(v)?)))
                } else {
                    (f, None)
                };
                let lhs = lhs.trim();
                if !lhs.starts_with('@') {
                    return err(format!("{src}: a filter tests @, as in [?(@.name==\"x\")]"));
                }
                steps.push(Step::Filter {
                    path: path(lhs)?,
                    test,
                });
            } else if inner.starts_with('\'') || inner.starts_with('"') {
                let name = if inner.starts_with('"') {
                    literal(inner)?
                } else {
                    inner.trim_matches('\'').to_string()
                };
                steps.push(Step::Field(name));
            } else {
                match inner.parse::<i64>() {
                    Ok(n) => steps.push(Step::Index(n)),
                    Err(_) => {
                        return err(format!(
                            "{src}: [{inner}] is not an index, [*], a 'name' or a filter"
                        ))
                    }
                }
            }
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Field(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    Ok(steps)
}

impl Template {
    /// Parses a template (`{.items[*].metadata.name}`).
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        // A stack of open ranges: (path, pieces so far); the bottom is the template.
        let mut stack: Vec<(Vec<Step>, Vec<Piece>)> = vec![(Vec::new(), Vec::new())];
        let mut rest = src;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                stack
                    .last_mut()
                    .expect("bottom")
                    .1
                    .push(Piece::Text(rest.to_string()));
                break;
            };
            if open > 0 {
                stack
                    .last_mut()
                    .expect("bottom")
                    .1
                    .push(Piece::Text(rest[..open].to_string()));
            }
            // The closing brace, skipping braces inside string literals.
            let body = &rest[open + 1..];
            let mut in_str = None;
            let mut close = None;
            let mut escaped = false;
            for (i, c) in body.char_indices() {
                match (in_str, c) {
                    (Some(_), '\\') if !escaped => {
                        escaped = true;
                        continue;
                    }
                    (Some(q), c) if c == q && !escaped => in_str = None,
                    (None, '"' | '\'') => in_str = Some(c),
                    (None, '}') => {
                        close = Some(i);
                        break;
                    }
                    _ => {}
                }
                escaped = false;
            }
            let Some(close) = close else {
                return err(format!("unclosed {{ in {src:?}"));
            };
            let expr = body[..close].trim();
            rest = &body[close + 1..];
            if let Some(p) = expr.strip_prefix("range ") {
                stack.push((path(p)?, Vec::new()));
            } else if expr == "end" {
                if stack.len() < 2 {
                    return err("{end} without {range}");
                }
                let (p, pieces) = stack.pop().expect("a range");
                stack
                    .last_mut()
                    .expect("bottom")
                    .1
                    .push(Piece::Range(p, pieces));
            } else if expr.starts_with('"') {
                stack
                    .last_mut()
                    .expect("bottom")
                    .1
                    .push(Piece::Text(literal(expr)?));
            } else if expr.is_empty() {
                return err("an empty {} expression");
            } else {
                stack
                    .last_mut()
                    .expect("bottom")
                    .1
                    .push(Piece::Path(path(expr)?));
            }
        }
        if stack.len() != 1 {
            return err("{range} without {end}");
        }
        Ok(Template(stack.pop().expect("bottom").1))
    }

    /// Renders the template against `v`.
    pub fn render(&self, v: &Value) -> String {
        let mut out = String::new();
        render(&self.0, v, &mut out);
        out
    }
}

fn render(pieces: &[Piece], v: &Value, out: &mut String) {
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Path(steps) => {
                let found = select(v, steps);
                for (i, x) in found.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    match x {
                        Value::String(s) => out.push_str(s),
                        other => out.push_str(&other.to_string()),
                    }
                }
            }
            Piece::Range(steps, body) => {
                for x in select(v, steps) {
                    // `{range .items[*]}` walks the items; a range over one array walks it.
                    match x {
                        Value::Array(items) if !ends_in_all(steps) => {
                            for it in items {
                                render(body, it, out);
                            }
                        }
                        _ => render(body, x, out),
                    }
                }
            }
        }
    }
}

fn ends_in_all(steps: &[Step]) -> bool {
    matches!(steps.last(), Some(Step::All | Step::Filter { .. }))
}

/// Every value `steps` reaches from `v`.
fn select<'a>(v: &'a Value, steps: &[Step]) -> Vec<&'a Value> {
    let mut cur = vec![v];
    for s in steps {
        let mut next = Vec::new();
        for x in cur {
            match s {
                Step::Field(f) => next.extend(x.get(f.as_str())),
                Step::Index(i) => {
                    if let Some(a) = x.as_array() {
                        let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                        next.extend(usize::try_from(idx).ok().and_then(|i| a.get(i)));
                    }
                }
                Step::All => match x {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Descend(f) => descend(x, f, &mut next),
                Step::Filter { path, test } => {
                    let items: Vec<&Value> = match x {
                        Value::Array(a) => a.iter().collect(),
                        other => vec![other],
                    };
                    for it in items {
                        let got = select(it, path);
                        let keep = match test {
                            None => got
                                .iter()
                                .any(|g| !g.is_null() && **g != Value::Bool(false)),
                            Some((eq, want)) => got.contains(&want) == *eq,
                        };
                        if keep {
                            next.push(it);
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

fn descend<'a>(v: &'a Value, field: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(field) {
                out.push(x);
            }
            for x in m.values() {
                descend(x, field, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                descend(x, field, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({"kind": "PodList", "items": [
            {"metadata": {"name": "a-n", "namespace": "default"},
             "status": {"phase": "Running", "containerStatuses": [
                {"name": "main", "restartCount": 2, "ready": true},
                {"name": "side", "restartCount": 0, "ready": false}]}},
            {"metadata": {"name": "b-n", "namespace": "kube-system"},
             "status": {"phase": "Pending", "containerStatuses": []}}
        ]})
    }

    fn r(t: &str) -> String {
        Template::parse(t).unwrap().render(&list())
    }

    #[test]
    fn paths_select_like_kubectl() {
        assert_eq!(r("{.items[*].metadata.name}"), "a-n b-n");
        assert_eq!(r("{.items[0].status.phase}"), "Running");
        assert_eq!(r("{.items[-1].metadata.namespace}"), "kube-system");
        assert_eq!(r("{$.kind}"), "PodList");
        assert_eq!(r("{.items[0]['metadata'].name}"), "a-n");
        assert_eq!(r("{..restartCount}"), "2 0");
        assert_eq!(r("{.items[0].status.containerStatuses[0].ready}"), "true");
        assert_eq!(r("{.nothing.here}"), "");
    }

    #[test]
    fn filters_pick_matching_items() {
        assert_eq!(
            r(r#"{.items[0].status.containerStatuses[?(@.name=="side")].restartCount}"#),
            "0"
        );
        assert_eq!(
            r(r#"{.items[?(@.status.phase!="Running")].metadata.name}"#),
            "b-n"
        );
        assert_eq!(
            r("{.items[0].status.containerStatuses[?(@.ready)].name}"),
            "main"
        );
    }

    #[test]
    fn range_text_and_literals() {
        assert_eq!(
            r(r#"{range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}"#),
            "default/a-n\nkube-system/b-n\n"
        );
        assert_eq!(
            r(r#"name: {.items[1].metadata.name}{"\t"}x"#),
            "name: b-n\tx"
        );
    }

    #[test]
    fn malformed_templates_are_errors() {
        for t in [
            "{.items[0",
            "{range .items[*]}",
            "{end}",
            "{.a[x]}",
            "{",
            "{}",
        ] {
            assert!(Template::parse(t).is_err(), "{t}");
        }
    }
}
