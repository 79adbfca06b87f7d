//! Query (command 18) against the real server: the raw reply's JSON shape
//! (`rows`, `next`, `plan`), error replies with the engine's text (status Error, data
//! plain UTF-8 as every v0.3 client expects), paging through the Rust client's
//! builder and iterator, and a page cut at `net.reply_budget_mb` that resumes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client as RawClient, Server};
use docdb_client::{Batch, Client};
use docdb_protocol::{Command as Cmd, Op, OpType};
use serde_json::{json, Value};

/// Creates the documents `ids` (`doc(id)`) in `coll` of `db`, 1,000 per request.
fn create_all(
    db: &docdb_client::Database,
    coll: &str,
    ids: std::ops::Range<u64>,
    doc: impl Fn(u64) -> Value,
) {
    let mut next = ids.start;
    while next < ids.end {
        let end = ids.end.min(next + 1_000);
        let batch = (next..end).fold(Batch::new().collection(coll), |b, id| {
            b.create_json(id, &doc(id))
        });
        assert!(db.execute(&batch).unwrap().iter().all(Result::is_ok));
        next = end;
    }
}

fn query(raw: &mut RawClient, db: u64, coll: &str, q: &str) -> (u8, Vec<u8>) {
    let r = raw.call(
        db,
        Cmd::Query,
        vec![Op::new(OpType::Read, coll, 0, q.as_bytes().to_vec())],
    );
    (r.status, r.data)
}

#[test]
fn raw_frames_pin_the_reply_and_the_errors() {
    let server = Server::start(&[]);
    let mut raw = RawClient::connect(&server.socket);
    let db = raw.open_db("q");
    for id in 1..=5u64 {
        let doc = json!({"n": id, "tag": if id % 2 == 0 { "even" } else { "odd" }, "x": {"y": id}});
        assert_eq!(raw.create(db, "", id, &doc.to_string()).0, 0);
    }
    let (st, data) = query(
        &mut raw,
        db,
        "",
        r#"{"filter":{"tag":"odd"},"sort":[["n",-1]],"projection":["x.y"],"explain":true}"#,
    );
    assert_eq!(st, 0, "{}", String::from_utf8_lossy(&data));
    assert_eq!(
        String::from_utf8(data).unwrap(),
        r#"{"rows":[{"id":5,"doc":{"x":{"y":5}}},{"id":3,"doc":{"x":{"y":3}}},{"id":1,"doc":{"x":{"y":1}}}],"next":null,"plan":{"collection":"_default","examined":5,"kind":"scan"}}"#
    );
    // An empty payload is {}: every document by id.
    let (st, data) = query(&mut raw, db, "", "");
    assert_eq!(st, 0);
    let v: Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), 5);
    assert_eq!(v["next"], Value::Null);
    // Paging: limit 2 gives a cursor; the cursor resumes.
    let (_, data) = query(&mut raw, db, "", r#"{"limit":2}"#);
    let v: Value = serde_json::from_slice(&data).unwrap();
    let next = v["next"].as_str().unwrap().to_owned();
    let (_, data) = query(
        &mut raw,
        db,
        "",
        &format!(r#"{{"limit":2,"after":"{next}"}}"#),
    );
    let v: Value = serde_json::from_slice(&data).unwrap();
    let ids: Vec<u64> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![3, 4]);

    // Errors: status Error (1), the text as data.
    for (q, want) in [
        (
            r#"{"filter":{"a":{"$foo":1}}}"#,
            "invalid query: unknown operator $foo at path a",
        ),
        (
            r#"{"filter":{"a":{"$nin":"x"}}}"#,
            "invalid query: $nin at path a needs an array, got a string",
        ),
        (
            r#"{"limit":5000}"#,
            "invalid query: limit must be an integer from 1 to 1000, got 5000",
        ),
        (
            r#"{"after":"00ff"}"#,
            "invalid query: after: the cursor is damaged or was not returned by this server",
        ),
        (
            "not json",
            "invalid query: query is not valid JSON: expected ident at line 1 column 2",
        ),
    ] {
        let (st, data) = query(&mut raw, db, "", q);
        assert_eq!(
            (st, String::from_utf8(data).unwrap().as_str()),
            (1, want),
            "{q}"
        );
    }
    let (st, data) = query(&mut raw, db, "nope", "{}");
    assert_eq!(
        (st, data.as_slice()),
        (1, b"collection not found".as_slice())
    );
    // The connection is still usable after the errors.
    assert_eq!(raw.read(db, "", 1).0, 0);
}

#[test]
fn the_rust_client_builds_pages_and_iterates() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("qc").unwrap();
    db.create_collection("people").unwrap();
    let people = db.collection("people");
    create_all(
        &db,
        "people",
        0..250,
        |id| json!({"age": id % 50, "name": format!("p{id}"), "tags": [id % 3, "t"]}),
    );

    let q = people
        .query()
        .filter(json!({"age": {"$gte": 40}, "tags": 0}))
        .sort_desc("age")
        .sort_asc("name")
        .limit(7);
    let got: Vec<(u64, Value)> = q.iter().collect::<Result<_, _>>().unwrap();
    let mut want: Vec<(u64, u64, String)> = (0..250u64)
        .filter(|id| id % 50 >= 40 && id % 3 == 0)
        .map(|id| (id, id % 50, format!("p{id}")))
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
    assert_eq!(
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
        want.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    let page = q
        .clone()
        .projection(&["name"])
        .explain(true)
        .page()
        .unwrap();
    assert_eq!(page.rows.len(), 7);
    assert_eq!(page.rows[0].doc, json!({"name": want[0].2}));
    assert_eq!(page.plan.unwrap()["examined"], json!(250));
    // The same page typed (a map) and as the server's JSON text, and a document
    // that does not fit the type fails the page with a protocol error.
    type Name = std::collections::HashMap<String, String>;
    let typed = q.clone().projection(&["name"]).page_as::<Name>().unwrap();
    assert_eq!(typed.rows[0].doc["name"], want[0].2);
    assert_eq!(typed.rows.len(), 7);
    let raw = q
        .clone()
        .page_as::<Box<serde_json::value::RawValue>>()
        .unwrap();
    let first: Value = serde_json::from_str(raw.rows[0].doc.get()).unwrap();
    assert_eq!(first["name"], json!(want[0].2));
    assert_eq!(raw.next.is_some(), q.clone().page().unwrap().next.is_some());
    assert!(q.clone().page_as::<u64>().is_err());
    let err = people
        .query()
        .filter(json!({"$where": "1"}))
        .page()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid query: unknown top-level operator $where"
    );
}

#[test]
fn a_page_stops_at_the_reply_budget_and_resumes() {
    let server = Server::start_with_config("[net]\nreply_budget_mb = 1\n", &[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("qb").unwrap();
    let big = "x".repeat(300 * 1024);
    for id in 0..10u64 {
        db.create_json(id, &json!({"n": id, "s": big})).unwrap();
    }
    let page = db.query().sort_desc("n").limit(100).page().unwrap();
    assert_eq!(
        page.rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![9, 8, 7],
        "1 MiB holds three 300 KiB rows"
    );
    assert!(page.next.is_some());
    let all: Vec<u64> = db
        .query()
        .sort_desc("n")
        .filter(json!({"n": {"$lt": 100}}))
        .iter()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(all, (0..10u64).rev().collect::<Vec<_>>());
}

/// The planner over the wire: with an index on the filtered field, `explain` names it
/// and the page reads only the matching documents of a 5000-document collection;
/// a sort served by an index stops at `limit + 1`; without the index, the same
/// query scans all 5000.
#[test]
fn explain_names_the_index_and_the_documents_it_read() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("qi").unwrap();
    db.create_collection("orders").unwrap();
    create_all(&db, "orders", 0..5_000, |id| {
        let status = if id % 2 == 0 { "open" } else { "shipped" };
        json!({"customer": format!("c{}", id % 1000), "total": id, "status": status})
    });
    let spec = docdb_client::IndexSpec::new("by_customer").asc("customer");
    db.create_index("orders", &spec).unwrap();
    let spec = docdb_client::IndexSpec::new("by_total").desc("total");
    db.create_index("orders", &spec).unwrap();
    let orders = db.collection("orders");

    let page = orders
        .query()
        .filter(json!({"customer": "c7", "status": "shipped"}))
        .explain(true)
        .page()
        .unwrap();
    let ids: Vec<u64> = page.rows.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![7, 1007, 2007, 3007, 4007]);
    let plan = page.plan.unwrap();
    assert_eq!(plan["kind"], "index", "{plan}");
    assert_eq!(plan["index"], "by_customer", "{plan}");
    assert_eq!(plan["examined"], 5, "{plan}");
    assert_eq!(plan["keys_examined"], 5, "{plan}");
    // `status` is not in the index: each candidate is read and tested.
    assert_eq!(plan["exact"], false, "{plan}");
    assert!(plan["bounds"]
        .as_array()
        .unwrap()
        .contains(&json!([{"included": ["c7"]}, {"included": ["c7"]}])));

    // A range on the total, sorted by it ascending: the descending index read
    // backward, stopping at the first entry past limit + 1 rows. The index (never an
    // array in it) decides the filter and holds the sort key: no document is tested,
    // only the page's rows are read.
    let page = orders
        .query()
        .filter(json!({"total": {"$gte": 100}}))
        .sort_asc("total")
        .limit(10)
        .explain(true)
        .page()
        .unwrap();
    let ids: Vec<u64> = page.rows.iter().map(|r| r.id).collect();
    assert_eq!(ids, (100..110).collect::<Vec<_>>());
    let plan = page.plan.unwrap();
    assert_eq!(
        (
            &plan["index"],
            &plan["direction"],
            &plan["keys_examined"],
            &plan["examined"],
            &plan["exact"]
        ),
        (
            &json!("by_total"),
            &json!("backward"),
            &json!(12),
            &json!(0),
            &json!(true)
        ),
        "{plan}"
    );

    // Without the index: the same answer from a scan of every document.
    db.drop_index("orders", "by_customer").unwrap();
    let page = orders
        .query()
        .filter(json!({"customer": "c7", "status": "shipped"}))
        .explain(true)
        .page()
        .unwrap();
    assert_eq!(page.rows.len(), 5);
    let plan = page.plan.unwrap();
    assert_eq!(
        (&plan["kind"], &plan["examined"]),
        (&json!("scan"), &json!(5000))
    );
}

/// A query runs after its database's queue is handed on, at the snapshot of its place
/// in the queue: pipelined on one connection, each query counts exactly the creates
/// sent before it, never one sent after it (even when that create commits while the
/// query still runs).
#[test]
fn a_query_sees_exactly_the_writes_queued_before_it() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("qs").unwrap();
    create_all(&db, "", 0..2_000, |id| json!({"k": "base", "n": id}));
    let count = br#"{"filter":{"k":"new"},"limit":1000}"#.to_vec();
    let mut pending = Vec::new();
    for round in 0..40u64 {
        let q = client
            .submit(
                db.id(),
                Cmd::Query,
                vec![Op::new(OpType::Read, "", 0, count.clone())],
            )
            .unwrap();
        let doc = json!({"k": "new"}).to_string().into_bytes();
        let w = client
            .submit(
                db.id(),
                Cmd::Execute,
                vec![Op::new(OpType::Create, "", 10_000 + round, doc)],
            )
            .unwrap();
        pending.push((round, q, w));
    }
    for (round, q, w) in pending {
        let r = q.wait().unwrap();
        assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
        let page: Value = serde_json::from_slice(&r.data).unwrap();
        let new = page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|row| row["id"].as_u64().unwrap() >= 10_000)
            .count() as u64;
        assert_eq!(new, round, "query {round} saw {new} of the creates");
        assert_eq!(w.wait().unwrap().status, 0);
    }
}

/// A slow query does not hold up its database's next requests: a by-id read sent
/// right after a query that scans 100,000 documents is answered long before it.
#[test]
fn a_slow_query_does_not_hold_up_the_next_request_of_its_database() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("qslow").unwrap();
    create_all(&db, "", 0..100_000, |id| json!({"n": id}));
    let other = Client::connect(&server.socket).unwrap();
    let mut first_read = 0;
    for _ in 0..5 {
        let slow = br#"{"filter":{"n":{"$lt":-1}}}"#.to_vec();
        let started = std::time::Instant::now();
        let q = client
            .submit(
                db.id(),
                Cmd::Query,
                vec![Op::new(OpType::Read, "", 0, slow)],
            )
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let read = other
            .database_by_id(db.id())
            .collection("")
            .read(7)
            .unwrap();
        let read_at = started.elapsed();
        assert_eq!(
            serde_json::from_slice::<Value>(&read).unwrap(),
            json!({"n": 7})
        );
        let r = q.wait().unwrap();
        let query_at = started.elapsed();
        assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
        // Served beside the query, the read takes a small part of its time; queued
        // behind it, the read's answer comes right after the query's.
        if read_at * 4 < query_at {
            first_read += 1;
        }
    }
    assert!(
        first_read >= 4,
        "the read was answered early in {first_read} of 5 rounds (the query scans 100,000 documents)"
    );
}
