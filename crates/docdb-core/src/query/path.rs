//! Dotted paths into documents (`a.b.0.c`) and the values they reach.

use std::fmt;

use serde_json::Value;

/// A dotted path: non-empty segments separated by `.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    text: String,
    segments: Vec<String>,
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, String> {
        if text.is_empty() {
            return Err("invalid path \"\": empty".into());
        }
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("invalid path {text:?}: empty segment"));
        }
        if segments.iter().any(|s| s.starts_with('$')) {
            return Err(format!("invalid path {text:?}: a segment starts with $"));
        }
        Ok(Path {
            text: text.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Every value the path reaches, fanning out through arrays of objects (see
    /// [`super::filter`]). Empty: the field is missing.
    pub fn candidates<'a>(&self, doc: &'a Value) -> Vec<&'a Value> {
        let mut out = Vec::new();
        collect(doc, &self.segments, &mut out);
        out
    }

    /// The one value the path names, descending through objects and numbered array
    /// elements only (no fan-out): the sort key of a document.
    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        let mut cur = doc;
        for s in &self.segments {
            cur = match cur {
                Value::Object(m) => m.get(s)?,
                Value::Array(items) => items.get(index(s)?)?,
                _ => return None,
            };
        }
        Some(cur)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A segment as an array index: decimal digits without a leading zero (except "0").
fn index(s: &str) -> Option<usize> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

fn collect<'a>(v: &'a Value, rest: &[String], out: &mut Vec<&'a Value>) {
    let Some((first, tail)) = rest.split_first() else {
        out.push(v);
        return;
    };
    match v {
        Value::Object(m) => {
            if let Some(c) = m.get(first) {
                collect(c, tail, out);
            }
        }
        Value::Array(items) => {
            if let Some(c) = index(first).and_then(|i| items.get(i)) {
                collect(c, tail, out);
            }
            for e in items.iter().filter(|e| e.is_object()) {
                collect(e, rest, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn candidates_fan_out_through_arrays_of_objects() {
        let doc = json!({"a": [{"b": 1}, {"b": [2]}, 3, {"c": 4}], "x": {"y": null}});
        let p = |s: &str| Path::parse(s).ok();
        let a_b = p("a.b").map(|p| p.candidates(&doc).into_iter().cloned().collect::<Vec<_>>());
        assert_eq!(a_b, Some(vec![json!(1), json!([2])]));
        assert_eq!(p("a.2").and_then(|p| p.get(&doc).cloned()), Some(json!(3)));
        assert_eq!(
            p("x.y").and_then(|p| p.get(&doc).cloned()),
            Some(json!(null))
        );
        assert_eq!(p("x.z").and_then(|p| p.get(&doc).cloned()), None);
        assert!(Path::parse("a.").is_err());
        assert!(Path::parse("").is_err());
    }
}
