//! CreateIndex (19, new): ops[0].collection, payload
//! `{"name":..,"fields":[[path,1|-1],...],"unique":bool}` (`unique` optional, false).
//! Empty reply once the index is built and its definition durable (SPEC §8.1, §11).
//!
//! Taken from the database's queue (after the writes queued before it are durable),
//! but built on a thread of its own ([`crate::index_builds`]): the database's later
//! requests, reads and writes alike, are served while it builds, and the writes made
//! meanwhile are in the index when it is answered. The index joins its collection
//! before the next request of the queue is taken, so ListIndexes (and DropIndex, and a
//! CreateIndex of the same name) of any request after it finds it `building` until it
//! is answered; queries do not use it yet. At most `limits.max_index_builds` builds run
//! at once server-wide (one more is answered Error at once); DropDB, shutdown and a
//! DropIndex of the index cancel a build (answered Error, nothing left). A panic in a
//! build is answered `internal error` and leaves nothing registered either.
//! A bad payload is `Error` with a text saying what is wrong; a unique index over
//! documents that share a key is `Conflict` `duplicate key for unique index NAME`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use docdb_core::{Database, Error, IndexDef};
use docdb_protocol::{text, Command, Request};
use serde_json::Value;

use super::{answer, collection, first_op, maybe_inject_build_panic, spec_of};
use crate::context::Context;
use crate::reply::{Reply, Task};

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

/// The collection and definition of a CreateIndex, or the reply refusing it.
fn request(req: &Request) -> Result<(String, IndexDef), Reply> {
    let op = first_op(req)?;
    let def = parse(&op.payload).ok_or_else(|| Reply::error(text::INVALID_CREATE_INDEX))?;
    let coll = collection(op).map_err(|e| Reply::from(&e))?;
    Ok((coll.to_owned(), def))
}

pub fn run(ctx: &Arc<Context>, db: &Arc<Database>, db_id: u64, task: Task) {
    let spec = spec_of(Command::CreateIndex);
    let Task {
        req,
        reply,
        enqueued,
    } = task;
    let (coll, def) = match request(&req) {
        Ok(r) => r,
        Err(refused) => return answer(ctx, spec, enqueued, reply, refused),
    };
    let permit = match ctx.index_builds.start(db_id) {
        Ok(p) => p,
        Err(why) => return answer(ctx, spec, enqueued, reply, Reply::error(&why)),
    };
    // The index joins its collection here, on the database's queue, so every request
    // taken after this one sees it building (ListIndexes, DropIndex, writes); only the
    // fill runs on the build's thread. A refusal (exists, too many, bad definition)
    // is answered from here.
    let build = match db.begin_index(&coll, def) {
        Ok(b) => b,
        Err(e) => {
            drop(permit);
            return answer(ctx, spec, enqueued, reply, Reply::from(&e));
        }
    };
    let (ctx, db) = (ctx.clone(), db.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("docdb-index-{db_id}"))
        .spawn(move || {
            let name = build.name().to_owned();
            let built = catch_unwind(AssertUnwindSafe(|| {
                build.run(&|| {
                    maybe_inject_build_panic(&ctx, &name);
                    permit.cancelled()
                })
            }));
            let out = match built {
                Ok(Ok(())) => Reply::empty(),
                Ok(Err(Error::IndexBuildCancelled { .. })) => Reply::error(permit.cancel_text()),
                Ok(Err(e)) => Reply::from(&e),
                Err(_) => {
                    ctx.scheduler().record_panic();
                    tracing::error!(
                        db = db_id,
                        "panic in an index build; answered internal error"
                    );
                    Reply::error(text::INTERNAL)
                }
            };
            // The handle and the build's place go first: once answered, the database
            // can close and another build start.
            drop(db);
            drop(permit);
            answer(&ctx, spec, enqueued, reply, out);
        });
    if let Err(e) = spawned {
        // The closure, and the build and ReplyTo in it, are dropped: the index leaves
        // its collection and the request is answered `internal error`.
        tracing::error!(db = db_id, error = %e, "starting an index build thread failed");
    }
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
