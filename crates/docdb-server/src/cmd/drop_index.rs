//! DropIndex (20, new): ops[0].collection, payload `{"name":..}`. Empty reply;
//! NotFound `index not found: NAME` for an unknown index. An index still building is
//! dropped too: its build stops and its CreateIndex is answered Error `index NAME was
//! dropped while it was building`.

use docdb_core::Database;
use docdb_protocol::{text, Request};
use serde_json::Value;

use super::{collection, first_op};
use crate::context::Context;
use crate::reply::Reply;

fn parse(payload: &[u8]) -> Option<String> {
    let Value::Object(map) = serde_json::from_slice(payload).ok()? else {
        return None;
    };
    match map.into_iter().collect::<Vec<_>>().as_slice() {
        [(k, Value::String(name))] if k == "name" => Some(name.clone()),
        _ => None,
    }
}

pub fn run(_: &Context, db: &Database, req: &Request) -> Reply {
    let op = match first_op(req) {
        Ok(op) => op,
        Err(reply) => return reply,
    };
    let Some(name) = parse(&op.payload) else {
        return Reply::error(text::INVALID_DROP_INDEX);
    };
    collection(op)
        .and_then(|c| db.drop_index(c, &name))
        .map(|()| Vec::new())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_refuse() {
        assert_eq!(parse(br#"{"name":"a"}"#), Some("a".into()));
        for bad in [r#"{"name":1}"#, r#"{"name":"a","x":1}"#, "{}", "x"] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
