//! Projection: a document reduced to the listed paths, keeping their nesting (and
//! through arrays, the listed fields of each object element). The id is part of the
//! row, so it is always returned.

use serde_json::{Map, Value};

use super::path::Path;

/// A tree of the projected paths.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    /// True when a listed path ends here: the whole value is kept.
    whole: bool,
    children: Vec<(String, Projection)>,
}

impl Projection {
    pub fn new(paths: &[Path]) -> Projection {
        let mut root = Projection::default();
        for p in paths {
            let mut node = &mut root;
            for s in p.segments() {
                let at = match node.children.iter().position(|(k, _)| k == s) {
                    Some(i) => i,
                    None => {
                        node.children.push((s.clone(), Projection::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[at].1;
            }
            node.whole = true;
        }
        root
    }

    /// The projected document (`{}` when nothing listed is present).
    pub fn apply(&self, doc: &Value) -> Value {
        self.project(doc)
            .unwrap_or_else(|| Value::Object(Map::new()))
    }

    fn project(&self, v: &Value) -> Option<Value> {
        if self.whole {
            return Some(v.clone());
        }
        match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, child) in &self.children {
                    if let Some(p) = m.get(k).and_then(|c| child.project(c)) {
                        out.insert(k.clone(), p);
                    }
                }
                Some(Value::Object(out))
            }
            Value::Array(items) => Some(Value::Array(
                items
                    .iter()
                    .filter(|e| e.is_object() || e.is_array())
                    .filter_map(|e| self.project(e))
                    .collect(),
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_listed_paths_with_their_nesting() {
        let paths: Vec<Path> = ["a.b", "c", "arr.x"]
            .iter()
            .filter_map(|s| Path::parse(s).ok())
            .collect();
        let p = Projection::new(&paths);
        let doc = json!({"a": {"b": 1, "z": 2}, "c": [1], "d": 4,
                         "arr": [{"x": 1, "y": 2}, 5, {"y": 3}]});
        assert_eq!(
            p.apply(&doc),
            json!({"a": {"b": 1}, "c": [1], "arr": [{"x": 1}, {}]})
        );
        assert_eq!(p.apply(&json!(3)), json!({}));
    }
}
