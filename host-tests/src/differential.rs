//! keel-core's decode against reference parsers, on the fields keel models.
//!
//! This module deals with the differential check of the parser: a manifest is decoded by
//! keel-core and rendered as Kubernetes JSON (`keel_linux::render::pod`, the pod as
//! written), and the same bytes are parsed by a mature reference parser (serde_yaml 0.9
//! for YAML, serde_json for JSON). Every key keel rendered must be present in the reference
//! value with an equal value; keys keel does not model are not compared.
//!
//! serde_yaml implements YAML 1.2's core schema, while Kubernetes (and so keel) resolves
//! plain scalars as go-yaml v2 does, by YAML 1.1 rules. Where the two legitimately differ
//! the comparison accepts the YAML 1.1 reading, and only in the direction keel took:
//! - `yes`/`no`/`on`/`off`/`y`/`n` (any of their 1.1 spellings): booleans for keel, strings
//!   for serde_yaml;
//! - leading-zero octal (`0555` = 365), `0b` binary and `_` digit separators: integers for
//!   keel, strings or decimal integers for serde_yaml;
//! - a quantity written as a plain number (`cpu: 1e3`, `memory: 0.5`): keel keeps the text
//!   as written (quantities are strings in the API), serde_yaml gives a number; they are
//!   compared as numbers.
//!
//! - a projected volume's `sources`: keel models the files of its `downwardAPI` sources as
//!   one list (every other source kind refers to API objects and is refused by keel; a
//!   source with no field keel knows contributes nothing, as in the kubelet), and renders
//!   them as one `downwardAPI` source; the reference's sources are folded the same way
//!   before the comparison (`fold_projected_sources`), so a manifest with two
//!   `downwardAPI` sources, or an empty `- {}` source, is no disagreement.
//!
//! Empty lists and objects keel renders for absent optional parts (an `exec` without a
//! `command`) match an absent or `null` reference value, and an empty string matches `null`:
//! the kubelet decodes `null` into a Go `string` (a `command` item, say) as `""`, as keel does.

use keel_core::manifest::{self, model::Pod, Error};
use serde::Deserialize;
use serde_json::Value;

/// Decodes `bytes` with keel-core and renders the pod as written.
pub fn keel_as_written(bytes: &[u8]) -> Result<Value, Error> {
    let mut pod = Box::<Pod>::default();
    manifest::decode(bytes, &mut pod, &mut |_| {})?;
    Ok(keel_linux::render::pod(&pod))
}

/// True if keel-core would read these bytes as JSON (SPEC 1.8).
pub fn is_json(bytes: &[u8]) -> bool {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The reference parsers' reading of the first document of `bytes`.
pub fn reference(bytes: &[u8]) -> Result<Value, String> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    if is_json(bytes) {
        // serde_json reads one value; a second top-level value is an error there, while
        // keel warns about it (SPEC 1.9): read the first value only, as keel does.
        let mut it = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        return it.next().ok_or("no JSON value")?.map_err(|e| e.to_string());
    }
    let doc = serde_yaml::Deserializer::from_str(text)
        .next()
        .ok_or("no YAML document")?;
    let v = serde_yaml::Value::deserialize(doc).map_err(|e| e.to_string())?;
    Ok(yaml_to_json(v))
}

fn yaml_to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(s) => Value::Array(s.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let k = match yaml_to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

/// go-yaml v2's YAML 1.1 booleans.
fn yaml11_bool(s: &str) -> Option<bool> {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            Some(false)
        }
        _ => None,
    }
}

/// go-yaml v2's YAML 1.1 integers (sign, `_`, `0b`, `0x`, leading-zero octal). go-yaml
/// parses with Go's `strconv.ParseInt(s, 0, 64)`, which takes the prefixes in either case.
fn yaml11_int(s: &str) -> Option<i64> {
    let t: String = s.chars().filter(|&c| c != '_').collect();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, &t[..]),
    };
    let v = if let Some(b) = t.strip_prefix("0b").or_else(|| t.strip_prefix("0B")) {
        i64::from_str_radix(b, 2).ok()?
    } else if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        i64::from_str_radix(&t[1..], 8).ok()?
    } else {
        t.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn scalar_eq(k: &Value, r: &Value) -> bool {
    if k == r {
        return true;
    }
    match (k, r) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Bool(b), Value::String(s)) => yaml11_bool(s) == Some(*b),
        (Value::Number(n), Value::String(s)) => n.as_i64().is_some() && yaml11_int(s) == n.as_i64(),
        // A quantity written as a plain number.
        (Value::String(s), Value::Number(n)) => s.parse::<f64>().ok() == n.as_f64(),
        _ => false,
    }
}

/// Every difference between keel's rendering `k` and the reference `r` on the keys `k`
/// has, as `path: keel X, reference Y` lines. Empty when they agree.
pub fn diff(k: &Value, r: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(k, r, &mut String::new(), &mut out);
    out
}

fn walk(k: &Value, r: &Value, path: &mut String, out: &mut Vec<String>) {
    match (k, r) {
        (Value::Object(km), Value::Object(rm)) => {
            for (key, kv) in km {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                match rm.get(key) {
                    Some(rv) => walk(kv, rv, path, out),
                    None if is_empty(kv) => {}
                    None => out.push(format!("{path}: keel {kv}, reference has no such key")),
                }
                path.truncate(len);
            }
        }
        (Value::Array(ka), Value::Array(ra)) => {
            if ka.len() != ra.len() {
                out.push(format!(
                    "{path}: keel has {} items, reference {}",
                    ka.len(),
                    ra.len()
                ));
                return;
            }
            for (i, (kv, rv)) in ka.iter().zip(ra).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(kv, rv, path, out);
                path.truncate(len);
            }
        }
        (kv, Value::Null) if is_empty(kv) => {}
        (Value::String(ks), Value::Null) if ks.is_empty() => {}
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
            out.push(format!("{path}: keel {k}, reference {r}"))
        }
        _ => {
            if !scalar_eq(k, r) {
                out.push(format!("{path}: keel {k}, reference {r}"));
            }
        }
    }
}

/// Decodes and validates `bytes` with keel-core (as `keel validate` does) and renders the
/// pod as written; `Err` when keel rejects the manifest.
pub fn keel_accepted(bytes: &[u8]) -> Result<Value, Error> {
    let mut pod = Box::<Pod>::default();
    manifest::check(bytes, "node1", &mut pod, &mut |_| {}, &mut |_| {})?;
    Ok(keel_linux::render::pod(&pod))
}

/// serde_yaml's error for an explicit `!!int` on text that YAML 1.2 does not read as an
/// integer but go-yaml v2 does (`!!int "04"` is octal 4 there, and so for keel): the
/// 1.1-vs-1.2 difference of the module docs, with no reference value to compare.
fn tagged_yaml11_int(err: &str) -> bool {
    err.split_once("invalid value: string \"")
        .and_then(|(_, rest)| rest.split_once("\", expected an integer"))
        .is_some_and(|(text, _)| yaml11_int(text).is_some())
}

/// The reference pod with each `spec.volumes[*].projected.sources` folded as keel models it
/// (module docs): the `items` of every `downwardAPI` source in order, as one `downwardAPI`
/// source, or no source when there are none.
fn fold_projected_sources(mut r: Value) -> Value {
    let volumes = r
        .pointer_mut("/spec/volumes")
        .and_then(Value::as_array_mut);
    for v in volumes.into_iter().flatten() {
        let Some(sources) = v.pointer_mut("/projected/sources") else {
            continue;
        };
        let Some(list) = sources.as_array() else {
            continue;
        };
        let items: Vec<Value> = list
            .iter()
            .filter_map(|s| s.pointer("/downwardAPI/items").and_then(Value::as_array))
            .flatten()
            .cloned()
            .collect();
        *sources = if items.is_empty() {
            Value::Array(Vec::new())
        } else {
            serde_json::json!([{ "downwardAPI": { "items": items } }])
        };
    }
    r
}

/// Checks with keel, parses with the reference parser, and compares. `Ok(None)` when keel
/// rejects the bytes (nothing to compare: a rejected pod's absent required fields render as
/// empty), `Ok(Some(()))` when they agree.
pub fn check(bytes: &[u8]) -> Result<Option<()>, String> {
    let Ok(k) = keel_accepted(bytes) else {
        return Ok(None);
    };
    let r = match reference(bytes) {
        Ok(r) => r,
        Err(e) if tagged_yaml11_int(&e) => return Ok(None),
        Err(e) => return Err(format!("keel accepted, reference parser failed: {e}")),
    };
    let d = diff(&k, &fold_projected_sources(r));
    if d.is_empty() {
        Ok(Some(()))
    } else {
        Err(d.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml11_ints_follow_go_yaml_v2() {
        assert_eq!(yaml11_int("0555"), Some(365));
        assert_eq!(yaml11_int("1_000"), Some(1000));
        assert_eq!(yaml11_int("0b1010"), Some(10));
        assert_eq!(yaml11_int("-0x1F"), Some(-31));
        assert_eq!(yaml11_int("0X1e"), Some(30));
        assert_eq!(yaml11_int("0B11"), Some(3));
        assert_eq!(yaml11_int("08"), None);
    }

    #[test]
    fn an_explicit_int_tag_on_a_yaml11_integer_is_not_a_disagreement() {
        let doc = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: app\n    image: busybox:1.36\n  somethingIgnored: !!int \"04\"\n";
        assert_eq!(check(doc.as_bytes()), Ok(None));
        assert!(!tagged_yaml11_int(
            "invalid value: string \"08\", expected an integer"
        ));
    }

    #[test]
    fn projected_sources_are_compared_as_keel_models_them() {
        // Found by `cargo xtask fuzz --seconds 600` (differential, 2026-12-06): a source
        // whose only key is unknown to keel (a misspelt serviceAccountToken) is accepted by
        // keel and the kubelet alike and contributes no file.
        let misspelt = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: app\n    image: busybox:1.36\n  volumes:\n  - name: v\n    projected:\n      sources:\n      - sdrviceAccountToken: {path: token}\n";
        assert_eq!(check(misspelt.as_bytes()), Ok(Some(())));
        let two = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: two\nspec:\n  containers:\n  - name: app\n    image: busybox:1.36\n  volumes:\n  - name: v\n    projected:\n      sources:\n      - downwardAPI:\n          items:\n          - {path: name, fieldRef: {fieldPath: metadata.name}}\n      - downwardAPI:\n          items:\n          - {path: ns, fieldRef: {fieldPath: metadata.namespace}}\n";
        assert_eq!(check(two.as_bytes()), Ok(Some(())));
        // Folding keeps the comparison able to fail: a file path keel got wrong is found.
        let k = keel_accepted(two.as_bytes()).unwrap();
        let mut r = reference(two.as_bytes()).unwrap();
        *r.pointer_mut("/spec/volumes/0/projected/sources/1/downwardAPI/items/0/path")
            .unwrap() = json!("other");
        assert_eq!(diff(&k, &fold_projected_sources(r)).len(), 1);
    }

    #[test]
    fn diff_reports_values_that_differ_and_ignores_unmodelled_keys() {
        let r = json!({"a": {"b": 1, "c": "x", "unmodelled": true}});
        assert!(diff(&json!({"a": {"b": 1, "c": "x"}}), &r).is_empty());
        assert_eq!(diff(&json!({"a": {"b": 2}}), &r).len(), 1);
        assert_eq!(diff(&json!({"a": {"d": 2}}), &r).len(), 1);
        assert_eq!(diff(&json!({"a": [1]}), &json!({"a": [1, 2]})).len(), 1);
        assert!(diff(
            &json!({"on": true, "q": "1e3"}),
            &json!({"on": "on", "q": 1000.0})
        )
        .is_empty());
        assert_eq!(diff(&json!({"on": false}), &json!({"on": "on"})).len(), 1);
    }
}
