//! CreateIndex (19, new): ops[0].collection, payload
//! `{"name":..,"fields":[[path,1|-1],...],"unique":bool}` (`unique` optional, false).
//! Empty reply once the index is built and its definition durable (SPEC §8.1, §11).
//!
//! Served from the database's queue: the build reads every document of the collection,
//! and the database's later requests wait for it (writes from other databases do not).
//! A bad payload is `Error` with a text saying what is wrong; a unique index over
//! documents that share a key is `Conflict` `duplicate key for unique index NAME`.

use docdb_core::{Database, IndexDef};
use docdb_protocol::{text, Request};
use serde_json::Value;

use super::{collection, first_op};
use crate::context::Context;
use crate::reply::Reply;

/// The definition in a CreateIndex payload; `None` when it is not of that shape (the
/// engine validates names, paths and directions with its own texts).
fn parse(payload: &[u8]) -> Option<IndexDef> {
    let Value::Object(map) = serde_json::from_slice(payload).ok()? else {
        return None;
    };
    let mut name = None;
    let mut fields = None;
    let mut unique = false;
    for (k, v) in &map {
        match k.as_str() {
            "name" => name = Some(v.as_str()?.to_owned()),
            "fields" => {
                let mut out = Vec::new();
                for f in v.as_array()? {
                    let [path, dir] = f.as_array()?.as_slice() else {
                        return None;
                    };
                    let dir = i8::try_from(dir.as_i64()?).ok()?;
                    out.push((path.as_str()?.to_owned(), dir));
                }
                fields = Some(out);
            }
            "unique" => unique = v.as_bool()?,
            _ => return None,
        }
    }
    Some(IndexDef {
        name: name?,
        fields: fields?,
        unique,
    })
}

pub fn run(_: &Context, db: &Database, req: &Request) -> Reply {
    let op = match first_op(req) {
        Ok(op) => op,
        Err(reply) => return reply,
    };
    let Some(def) = parse(&op.payload) else {
        return Reply::error(text::INVALID_CREATE_INDEX);
    };
    collection(op)
        .and_then(|c| db.create_index(c, def))
        .map(|()| Vec::new())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_refuse() {
        let d = parse(br#"{"name":"a","fields":[["x",1],["y.z",-1]],"unique":true}"#).unwrap();
        assert_eq!(d.fields, vec![("x".into(), 1), ("y.z".into(), -1)]);
        assert!(d.unique);
        assert!(!parse(br#"{"name":"a","fields":[["x",1]]}"#).unwrap().unique);
        for bad in [
            r#"{"fields":[["x",1]]}"#,
            r#"{"name":"a"}"#,
            r#"{"name":"a","fields":[["x"]]}"#,
            r#"{"name":"a","fields":[["x",1000]]}"#,
            r#"{"name":"a","fields":[["x",1]],"other":1}"#,
            r#"{"name":1,"fields":[]}"#,
            "[]",
            "",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
