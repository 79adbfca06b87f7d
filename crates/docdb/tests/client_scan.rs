//! The Rust client's scan iterator against the real server: every document once, in
//! id order, across page boundaries; typed and raw forms; resuming; collections.
#![allow(clippy::unwrap_used)]

mod common;

use common::Server;
use docdb_client::{Batch, Client};
use serde_json::{json, Value};

#[test]
fn scan_pages_through_2500_documents() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("scan").unwrap();
    // Ids 1..=2500, written 250 per request, out of order.
    let mut ids: Vec<u64> = (1..=2500).collect();
    ids.reverse();
    for chunk in ids.chunks(250) {
        let batch = chunk.iter().fold(Batch::new(), |b, &id| {
            b.create_json(id, &json!({"id": id, "sq": id * id}))
        });
        assert!(db.execute(&batch).unwrap().iter().all(Result::is_ok));
    }

    let rows: Vec<(u64, Value)> = db.scan().page_size(1000).collect::<Result<_, _>>().unwrap();
    assert_eq!(rows.len(), 2500);
    for (i, (id, doc)) in rows.iter().enumerate() {
        assert_eq!(*id, i as u64 + 1);
        assert_eq!(doc, &json!({"id": id, "sq": id * id}));
    }

    // Typed, from the middle, small pages.
    let typed: Vec<(u64, std::collections::BTreeMap<String, u64>)> = db
        .scan()
        .typed()
        .start_after(2490)
        .page_size(3)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        typed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        (2491..=2500).collect::<Vec<_>>()
    );
    assert_eq!(typed[0].1["sq"], 2491 * 2491);

    // Raw bytes are the stored JSON.
    let raw: Vec<(u64, Vec<u8>)> = db.scan().raw().take(2).collect::<Result<_, _>>().unwrap();
    assert_eq!(raw[0], (1, br#"{"id":1,"sq":1}"#.to_vec()));
    assert_eq!(raw[1].0, 2);

    // A full last page is followed by one empty request, then the end.
    assert_eq!(db.scan().page_size(500).count(), 2500);
    // Oversized pages are capped at the server's maximum and still see everything.
    assert_eq!(db.scan().page_size(5000).count(), 2500);
}

#[test]
fn scan_covers_collections_deletions_and_id_zero() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("scan2").unwrap();
    assert_eq!(db.scan().count(), 0, "an empty collection");

    db.create_collection("c").unwrap();
    let c = db.collection("c");
    for id in [0u64, 1, 2, 3, u64::MAX] {
        c.create_json(id, &id.to_string()).unwrap();
    }
    c.delete(2).unwrap();
    db.create(7, "7").unwrap();

    // Page size 1 is the hard case for id 0 (`start after 0` means from the start).
    for page in [1, 2, 100] {
        let ids: Vec<u64> = c.scan().page_size(page).map(|r| r.unwrap().0).collect();
        assert_eq!(ids, vec![0, 1, 3, u64::MAX], "page size {page}");
    }
    assert_eq!(c.scan().start_after(3).count(), 1);
    assert_eq!(c.scan().start_after(u64::MAX).count(), 0);
    assert_eq!(
        db.scan().map(|r| r.unwrap()).collect::<Vec<_>>(),
        vec![(7, json!(7))]
    );

    // A document that does not fit the type is an error item; the scan goes on.
    db.create(8, r#""eight""#).unwrap();
    let items: Vec<_> = db.scan().typed::<u64>().collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap(), &(7, 7));
    assert!(matches!(items[1], Err(docdb_client::Error::Json(_))));

    // A failed request is yielded once, then the iterator ends.
    let items: Vec<_> = db.collection("missing").scan().collect();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].as_ref().unwrap_err().server_text(),
        Some("collection not found")
    );
}
