//! Heal (9), HealAll (10), HealStats (11): rebuild corrupt documents from the WAL.

use docdb_core::Database;
use docdb_protocol::Request;

use super::{collection, first_op, json};
use crate::context::Context;
use crate::reply::Reply;

/// Heal (9): ops[0] collection + doc_id. Reply `OK`.
pub fn heal(ctx: &Context, db: &Database, req: &Request) -> Reply {
    let op = match first_op(req) {
        Ok(op) => op,
        Err(reply) => return reply,
    };
    ctx.metrics.healing_operations.inc();
    let r = collection(op).and_then(|c| db.heal(c, op.doc_id));
    if let Ok(true) = r {
        ctx.metrics.documents_healed.inc();
    }
    r.map(|_| b"OK".to_vec()).into()
}

/// HealAll (10): JSON array of the ids healed.
pub fn heal_all(ctx: &Context, db: &Database, _: &Request) -> Reply {
    ctx.metrics.healing_operations.inc();
    let r = db.heal_all();
    if let Ok(report) = &r {
        ctx.metrics
            .documents_healed
            .inc_by(report.healed.len() as u64);
    }
    r.map(|report| {
        let ids: Vec<u64> = report.healed.iter().map(|(_, id)| *id).collect();
        json(&ids)
    })
    .into()
}

/// The v0.3 HealStats reply, plus `Unrecoverable` (new): documents found corrupt with
/// no intact copy left, as `{"Collection","ID"}`.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct HealStatsReply {
    total_scans: u64,
    documents_healed: u64,
    documents_corrupted: u64,
    on_demand_healings: u64,
    background_healings: u64,
    last_scan_time: String,
    last_healing_time: String,
    unrecoverable: Vec<Unrecoverable>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Unrecoverable {
    collection: String,
    #[serde(rename = "ID")]
    id: u64,
}

/// RFC 3339, or Go's zero time (what v0.3 sent for "never").
fn rfc3339(t: Option<std::time::SystemTime>) -> String {
    t.and_then(|t| {
        time::OffsetDateTime::from(t)
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

/// HealStats (11): JSON with the v0.3 field names. The figures cover the server's
/// life, across closes and reopens of the database and the background healer's
/// offline scans while it was closed.
pub fn heal_stats(ctx: &Context, db: &Database, req: &Request) -> Reply {
    let s = ctx
        .pool
        .heal_stats(req.db_id)
        .unwrap_or_else(|| db.heal_stats());
    let r = HealStatsReply {
        total_scans: s.total_scans,
        documents_healed: s.documents_healed,
        documents_corrupted: s.documents_corrupted,
        on_demand_healings: s.on_demand_healings,
        background_healings: s.background_healings,
        last_scan_time: rfc3339(s.last_scan_time),
        last_healing_time: rfc3339(s.last_healing_time),
        unrecoverable: s
            .unrecoverable
            .into_iter()
            .map(|(collection, id)| Unrecoverable { collection, id })
            .collect(),
    };
    Reply::ok(json(&r))
}
