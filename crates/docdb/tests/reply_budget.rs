//! No reply passes the frame limit (SPEC §8.2, issue 11 item 1): an Execute or a
//! Transaction whose results would is answered with one clear error (and the server
//! does not build the oversize reply first), failing ops' texts count too, and a Scan
//! page stops at `net.reply_budget_mb` while the client iterator resumes across such
//! short pages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use common::{proc_status_kib, Client as RawClient, Server};
use docdb_client::{Batch, Client};
use docdb_protocol::{Command as Cmd, Op, OpType, MAX_FRAME};

const MIB: usize = 1 << 20;

/// A JSON string document of exactly `len` bytes.
fn doc_of(len: usize) -> Vec<u8> {
    let mut d = vec![b'x'; len];
    d[0] = b'"';
    d[len - 1] = b'"';
    d
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

#[test]
fn execute_of_200_reads_of_a_1_mib_document_fails_clearly_without_building_it() {
    let server = Server::start(&[]);
    let mut raw = RawClient::connect(&server.socket);
    let db = raw.open_db("amplify");
    let (st, _) = raw.execute(db, vec![Op::new(OpType::Create, "", 1, doc_of(MIB))]);
    assert_eq!(st, 0);
    let pid = server.pid();
    let before = proc_status_kib(pid, "VmHWM");

    // A write first, then 200 reads: the reply would be 200 MiB.
    let mut ops = vec![Op::new(OpType::Create, "", 2, b"{\"w\":1}".to_vec())];
    ops.extend((0..200).map(|_| Op::new(OpType::Read, "", 1, Vec::new())));
    for _ in 0..3 {
        let r = raw.call(db, Cmd::Execute, ops.clone());
        assert_eq!(r.status, 1, "status Error");
        let t = text(&r.data);
        assert!(
            t.starts_with("reply exceeds the frame limit (16 MiB): the first 17 of 201 ops ran"),
            "{t}"
        );
        ops[0] = Op::new(OpType::Update, "", 2, b"{\"w\":2}".to_vec());
    }
    // The write before the limit took effect (and is durable: it was answered).
    let (st, doc) = raw.read(db, "", 2);
    assert_eq!((st, doc.as_slice()), (0, b"{\"w\":2}".as_slice()));

    let growth_mib = (proc_status_kib(pid, "VmHWM").saturating_sub(before)) / 1024;
    println!("VmHWM growth over 3 Executes of 201 ops: {growth_mib} MiB");
    // Before the fix this grew by ~600 MB; a 16 MiB budget costs a few times that.
    assert!(growth_mib < 150, "server peak RSS grew by {growth_mib} MiB");

    // The Rust client surfaces it as one clear error, and still works afterwards.
    let client = Client::connect(&server.socket).unwrap();
    let cdb = client.open_db("amplify").unwrap();
    let batch = (0..200).fold(Batch::new(), |b, _| b.read(1));
    let err = cdb.execute(&batch).unwrap_err();
    assert!(
        err.to_string().contains("frame limit (16 MiB)"),
        "client error: {err}"
    );
    assert_eq!(cdb.read(2).unwrap(), b"{\"w\":2}");
}

#[test]
fn transaction_over_the_frame_limit_fails_and_applies_nothing() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("tx").unwrap();
    db.create(1, doc_of(MIB)).unwrap();
    let pid = server.pid();
    let before = proc_status_kib(pid, "VmHWM");

    let batch = (0..200).fold(Batch::new().create(2, "{\"t\":1}"), |b, _| b.read(1));
    let err = db.transaction(&batch).unwrap_err();
    assert!(
        err.to_string()
            .contains("reply exceeds the frame limit (16 MiB): the transaction was not applied"),
        "{err}"
    );
    assert!(db.read(2).unwrap_err().is_not_found(), "nothing applied");

    let growth_mib = (proc_status_kib(pid, "VmHWM").saturating_sub(before)) / 1024;
    println!("VmHWM growth over a Transaction of 201 ops: {growth_mib} MiB");
    assert!(growth_mib < 150, "server peak RSS grew by {growth_mib} MiB");

    // A transaction within the limit still commits.
    let ok = (0..3).fold(Batch::new().create(2, "{\"t\":2}"), |b, _| b.read(1));
    assert_eq!(db.transaction(&ok).unwrap().len(), 4);
}

#[test]
fn a_frame_of_a_million_failing_ops_gets_a_bounded_reply() {
    // Past the default limits.max_ops_per_request (100,000), so the reply budget and
    // not the op-count limit is what this shows.
    let server = Server::start_with_config("[limits]\nmax_ops_per_request = 1200000\n", &[]);
    let mut raw = RawClient::connect(&server.socket);
    raw.stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let db = raw.open_db("fails");
    // 1,000,000 reads of missing documents: a 15 MB frame whose 1 M error texts
    // ("document not found") would make a 22 MB reply.
    let ops: Vec<Op> = (0..1_000_000u64)
        .map(|i| Op::new(OpType::Read, "", i + 1, Vec::new()))
        .collect();
    let frame = support::frame(7, db, Cmd::Execute as u8, ops);
    assert!(frame.len() <= MAX_FRAME);
    raw.send_raw(&frame);
    let r = raw.recv().expect("a reply, not a closed connection");
    assert_eq!(r.request_id, 7);
    assert!(r.data.len() + 13 <= MAX_FRAME, "{} bytes", r.data.len());
    assert_eq!(r.status, 1);
    let t = text(&r.data);
    assert!(
        t.starts_with("reply exceeds the frame limit (16 MiB): the first ")
            && t.ends_with(" of 1000000 ops ran, the rest did not"),
        "{t}"
    );
    // The connection is still usable.
    let (st, _) = raw.read(db, "", 1);
    assert_eq!(st, 2, "NotFound");
}

#[test]
fn scan_pages_stop_at_the_reply_budget_and_the_iterator_resumes() {
    let server = Server::start(&[]);
    let mut raw = RawClient::connect(&server.socket);
    // Writing 20 MB can be slow on a loaded machine: more than the helper's 10 s.
    raw.stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let db = raw.open_db("pages");
    // 1,000 documents of 20 KB: 20 MB, more than a frame.
    for chunk in (1..=1000u64).collect::<Vec<_>>().chunks(100) {
        let ops = chunk
            .iter()
            .map(|&id| {
                let mut d = doc_of(20_000);
                d[1..21].copy_from_slice(format!("{id:020}").as_bytes());
                Op::new(OpType::Create, "", id, d)
            })
            .collect();
        let (st, _) = raw.execute(db, ops);
        assert_eq!(st, 0);
    }

    // Default (array) form: a short page within the budget, still an array.
    let scan = |raw: &mut RawClient, after: u64, opts: &[u8]| {
        raw.call(
            db,
            Cmd::Scan,
            vec![Op::new(OpType::Read, "", after, opts.to_vec())],
        )
    };
    let r = scan(&mut raw, 0, br#"{"limit":1000}"#);
    assert_eq!(r.status, 0, "{}", text(&r.data));
    assert!(r.data.len() <= 8 * MIB, "page of {} bytes", r.data.len());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&r.data).unwrap();
    assert!(rows.len() > 300 && rows.len() < 1000, "{} rows", rows.len());

    // The `next` form says where to resume, and null at the end.
    let mut after = 0;
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let r = scan(&mut raw, after, br#"{"limit":1000,"next":true}"#);
        assert_eq!(r.status, 0, "{}", text(&r.data));
        assert!(r.data.len() <= 8 * MIB, "page of {} bytes", r.data.len());
        let page: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
        let rows = page["rows"].as_array().unwrap();
        for row in rows {
            seen += 1;
            assert_eq!(row["id"].as_u64().unwrap(), seen);
        }
        pages += 1;
        match page["next"].as_u64() {
            Some(n) => {
                assert_eq!(n, seen);
                after = n;
            }
            None => break,
        }
    }
    assert_eq!((seen, pages), (1000, 3));

    // The Rust client's iterator yields all 1,000, in order, across short pages.
    let client = Client::connect(&server.socket).unwrap();
    let cdb = client.open_db("pages").unwrap();
    let ids: Vec<u64> = cdb
        .scan()
        .page_size(1000)
        .raw()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(ids, (1..=1000).collect::<Vec<_>>());
}

#[test]
fn a_smaller_reply_budget_makes_smaller_pages() {
    let server = Server::start_with_config("[net]\nreply_budget_mb = 1\n", &[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("small").unwrap();
    // Two documents each larger than the budget: one per page, none lost.
    db.create(1, doc_of(3 * MIB)).unwrap();
    db.create(2, doc_of(3 * MIB)).unwrap();
    db.create(3, "3").unwrap();
    let mut raw = RawClient::connect(&server.socket);
    let id = raw.open_db("small");
    let r = raw.call(
        id,
        Cmd::Scan,
        vec![Op::new(OpType::Read, "", 0, br#"{"next":true}"#.to_vec())],
    );
    assert_eq!(r.status, 0);
    let page: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
    assert_eq!(page["rows"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], 1);
    let ids: Vec<u64> = db.scan().raw().map(|r| r.unwrap().0).collect();
    assert_eq!(ids, vec![1, 2, 3]);
}
