//! The resume cursor (`after` in a query, `next` in its reply): where the last page
//! ended, as the last row's sort key and id, so the next page starts strictly after
//! `(key, id)` under the same sort. It stays correct while writes happen: rows are
//! found again by their position in the order, not by an offset.
//!
//! Format (opaque to clients): lowercase hex of
//! `JSON {"v":1,"sort":[[path,1|-1],...],"key":[[value] or [] (missing),...],"id":n}`
//! followed by the CRC-32C of that JSON (u32 little-endian). The checksum tells a
//! damaged or edited cursor from a real one; the sort in it refuses a cursor used
//! under a different sort. Neither is a secret: a client can build a valid cursor,
//! which only chooses where its own page starts.

use serde_json::{json, Value};

use super::sort::{SortField, SortKey};

const VERSION: u64 = 1;

/// A decoded cursor: the last row's key and id.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub key: SortKey,
    pub id: u64,
}

fn sort_json(sort: &[SortField]) -> Value {
    Value::Array(
        sort.iter()
            .map(|f| json!([f.path.as_str(), if f.descending { -1 } else { 1 }]))
            .collect(),
    )
}

/// The cursor text for a row.
pub fn encode(sort: &[SortField], key: &SortKey, id: u64) -> String {
    let key: Vec<Value> = key
        .iter()
        .map(|k| Value::Array(k.iter().cloned().collect()))
        .collect();
    let body = json!({"v": VERSION, "sort": sort_json(sort), "key": key, "id": id});
    let mut bytes = body.to_string().into_bytes();
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

const DAMAGED: &str = "after: the cursor is damaged or was not returned by this server";

/// Decodes and checks a cursor against the query's sort.
pub fn decode(text: &str, sort: &[SortField], max_depth: usize) -> Result<Cursor, String> {
    let hex = text.as_bytes();
    if !hex.len().is_multiple_of(2) || hex.len() < 10 {
        return Err(DAMAGED.into());
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut bytes = Vec::with_capacity(hex.len() / 2);
    for pair in hex.chunks_exact(2) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => bytes.push(h << 4 | l),
            _ => return Err(DAMAGED.into()),
        }
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != want {
        return Err(DAMAGED.into());
    }
    // The sort key nests one level below the key list, three below the top.
    if crate::json::nesting_depth(body, max_depth + 3) > max_depth + 3 {
        return Err(DAMAGED.into());
    }
    let v: Value = crate::patch::parse_bounded(body).map_err(|_| DAMAGED.to_string())?;
    if v.get("v").and_then(Value::as_u64) != Some(VERSION) {
        return Err("after: cursor version not supported".into());
    }
    if v.get("sort") != Some(&sort_json(sort)) {
        return Err("after: the cursor belongs to a different sort".into());
    }
    let id = v.get("id").and_then(Value::as_u64).ok_or(DAMAGED)?;
    let Some(Value::Array(parts)) = v.get("key") else {
        return Err(DAMAGED.into());
    };
    if parts.len() != sort.len() {
        return Err(DAMAGED.into());
    }
    let mut key = Vec::with_capacity(parts.len());
    for p in parts {
        match p.as_array().map(Vec::as_slice) {
            Some([]) => key.push(None),
            Some([x]) => key.push(Some(x.clone())),
            _ => return Err(DAMAGED.into()),
        }
    }
    Ok(Cursor { key, id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::path::Path;

    fn sort() -> Vec<SortField> {
        vec![SortField {
            path: Path::parse("a.b").unwrap_or_else(|_| unreachable!()),
            descending: true,
        }]
    }

    #[test]
    fn round_trips_and_refuses_any_flipped_byte() {
        let key = vec![Some(json!({"x": [1, "two"]}))];
        let text = encode(&sort(), &key, 42);
        assert_eq!(decode(&text, &sort(), 128), Ok(Cursor { key, id: 42 }));
        let missing = encode(&sort(), &vec![None], 0);
        assert_eq!(
            decode(&missing, &sort(), 128).map(|c| c.key),
            Ok(vec![None])
        );
        for i in 0..text.len() {
            let mut b = text.clone().into_bytes();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            let t = String::from_utf8(b).unwrap_or_default();
            assert!(decode(&t, &sort(), 128).is_err(), "flip at {i}");
        }
        assert_eq!(decode("zz", &sort(), 128), Err(DAMAGED.to_string()));
        assert_eq!(
            decode(&text, &[], 128),
            Err("after: the cursor belongs to a different sort".to_string())
        );
    }
}
