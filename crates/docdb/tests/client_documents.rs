//! The Rust client's document operations against the real server: CRUD, one typed
//! error per status, the serde helpers, patches, and named collections.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::Server;
use docdb_client::{Client, Error, PatchOp};
use serde_json::{json, Value};

#[test]
fn crud_with_a_typed_error_per_status() {
    let server = Server::start(&["--memory-per-db", "1"]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("crud").unwrap();
    assert_eq!(db.name(), "crud");
    assert_eq!(
        client.open_db("crud").unwrap().id(),
        db.id(),
        "opening again gives the same id"
    );

    let e = client.open_db("../escape").unwrap_err();
    assert!(e.is_server(), "{e:?}");

    db.create(1, r#"{"a":1}"#).unwrap();
    assert_eq!(db.read(1).unwrap(), br#"{"a":1}"#);
    db.update(1, r#"{"a":2}"#).unwrap();
    assert_eq!(db.read(1).unwrap(), br#"{"a":2}"#);

    // Status 3.
    let e = db.create(1, "{}").unwrap_err();
    assert!(e.is_conflict(), "{e:?}");
    assert!(matches!(&e, Error::Conflict(t) if t == "document already exists"));

    db.delete(1).unwrap();
    // Status 2, for read, update and delete.
    for e in [
        db.read(1).unwrap_err(),
        db.update(1, "{}").unwrap_err(),
        db.delete(1).unwrap_err(),
    ] {
        assert!(
            matches!(&e, Error::NotFound(t) if t == "document not found"),
            "{e:?}"
        );
        assert!(e.is_not_found());
    }

    // Status 1, with the stable text.
    let e = db.create(2, "raw:abc").unwrap_err();
    assert!(e.is_server(), "{e:?}");
    assert_eq!(
        e.to_string(),
        "payload must be valid JSON (forbidden prefixes: raw: hex:)"
    );
    let e = db.collection("no-such").read(1).unwrap_err();
    assert_eq!(e.server_text(), Some("collection not found"));

    // Status 4: the per-database budget is 1 MiB.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(700 * 1024));
    db.create(10, &big).unwrap();
    let e = db.create(11, &big).unwrap_err();
    assert!(
        matches!(&e, Error::MemoryLimit(t) if t == "memory limit exceeded"),
        "{e:?}"
    );
    assert!(
        db.read(11).unwrap_err().is_not_found(),
        "nothing was changed"
    );

    // A database id the server does not know: a request-level error.
    let unknown = client.database_by_id(db.id() + 1000);
    let e = unknown.read(1).unwrap_err();
    assert!(
        matches!(&e, Error::Server(t) if t == "database not open"),
        "{e:?}"
    );
    let e = unknown
        .execute(&docdb_client::Batch::new().read(1).read(2))
        .unwrap_err();
    assert_eq!(e.server_text(), Some("database not open"));
    // A handle made from a known id works like the one OpenDB returned.
    assert!(client.database_by_id(db.id()).read(10).is_ok());
}

#[test]
fn serde_helpers_round_trip_rust_values() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("serde").unwrap();

    let mut user = BTreeMap::new();
    user.insert("name".to_string(), json!("Ada"));
    user.insert("langs".to_string(), json!(["en", "fr"]));
    db.create_json(1, &user).unwrap();
    let back: BTreeMap<String, Value> = db.read_json(1).unwrap();
    assert_eq!(back, user);

    user.insert("age".to_string(), json!(36));
    db.update_json(1, &user).unwrap();
    let v: Value = db.read_json(1).unwrap();
    assert_eq!(v["age"], 36);

    // Any JSON value is a document.
    db.create_json(2, &vec![1u32, 2, 3]).unwrap();
    assert_eq!(db.read_json::<Vec<u32>>(2).unwrap(), vec![1, 2, 3]);
    db.create_json(3, "text").unwrap();
    assert_eq!(db.read_json::<String>(3).unwrap(), "text");

    // A stored document that does not fit the requested type.
    let e = db.read_json::<Vec<u32>>(1).unwrap_err();
    assert!(matches!(e, Error::Json(_)), "{e:?}");
    // A value that cannot become JSON never reaches the server.
    let mut bad = BTreeMap::new();
    bad.insert((1, 2), 3);
    assert!(matches!(db.create_json(4, &bad), Err(Error::Json(_))));
    assert!(db.read(4).unwrap_err().is_not_found());
}

#[test]
fn patches_apply_all_or_nothing() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("patch").unwrap();
    db.create(1, r#"{"name":"Ada","tags":["a","c"],"old":true}"#)
        .unwrap();

    db.patch(
        1,
        &[
            PatchOp::set("/age", 36),
            PatchOp::set("/address/city", "London"),
            PatchOp::insert("/tags/1", "b"),
            PatchOp::delete("/old"),
            PatchOp::copy_from("/name", "/nick"),
            PatchOp::test("/tags/2", "c"),
        ],
    )
    .unwrap();
    let v: Value = db.read_json(1).unwrap();
    assert_eq!(
        v,
        json!({"name":"Ada","nick":"Ada","age":36,"address":{"city":"London"},"tags":["a","b","c"]})
    );

    // Raw JSON with the Go client's key spelling, and a json! value.
    db.patch_raw(1, r#"[{"Op":"set","Path":"/age","Value":37}]"#)
        .unwrap();
    db.patch(1, &json!([{"op":"remove","path":"/tags/0"}]))
        .unwrap();
    let v: Value = db.read_json(1).unwrap();
    assert_eq!(
        (v["age"].clone(), v["tags"].clone()),
        (json!(37), json!(["b", "c"]))
    );

    // A failing op leaves the document untouched.
    let before = db.read(1).unwrap();
    let e = db
        .patch(1, &[PatchOp::set("/age", 99), PatchOp::delete("/missing")])
        .unwrap_err();
    assert_eq!(e.server_text(), Some("invalid JSON path"));
    let e = db
        .patch(
            1,
            &[PatchOp::set("/age", 99), PatchOp::test("/name", "Bob")],
        )
        .unwrap_err();
    assert_eq!(e.server_text(), Some("patch test failed"));
    let e = db.patch_raw(1, r#"{"not":"an array"}"#).unwrap_err();
    assert_eq!(e.server_text(), Some("invalid patch operations"));
    assert_eq!(db.read(1).unwrap(), before);

    assert!(db
        .patch(2, &[PatchOp::set("/a", 1)])
        .unwrap_err()
        .is_not_found());
    db.create(3, "[1,2]").unwrap();
    let e = db.patch(3, &[PatchOp::set("/a", 1)]).unwrap_err();
    assert_eq!(e.server_text(), Some("document is not a JSON object"));
}

#[test]
fn collections_are_created_listed_used_and_deleted() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("colls").unwrap();
    assert_eq!(db.list_collections().unwrap(), vec!["_default"]);

    db.create_collection("users").unwrap();
    db.create_collection("orders").unwrap();
    let e = db.create_collection("users").unwrap_err();
    assert_eq!(e.server_text(), Some("collection already exists"));
    assert_eq!(
        db.list_collections().unwrap(),
        vec!["_default", "orders", "users"]
    );
    let e = db.create_collection("../etc").unwrap_err();
    assert!(e.is_server(), "{e:?}");

    // Same id, different collections.
    let users = db.collection("users");
    users.create(1, r#"{"user":1}"#).unwrap();
    db.create(1, r#"{"default":1}"#).unwrap();
    assert_eq!(users.read(1).unwrap(), br#"{"user":1}"#);
    assert_eq!(db.read(1).unwrap(), br#"{"default":1}"#);
    assert_eq!(db.collection("").read(1).unwrap(), br#"{"default":1}"#);
    assert!(db.collection("orders").read(1).unwrap_err().is_not_found());
    users.update_json(1, &json!({"user": 2})).unwrap();
    users.patch(1, &[PatchOp::set("/x", true)]).unwrap();
    assert_eq!(
        users.read_json::<Value>(1).unwrap(),
        json!({"user": 2, "x": true})
    );

    let e = db.delete_collection("users").unwrap_err();
    assert_eq!(e.server_text(), Some("collection is not empty"));
    users.delete(1).unwrap();
    db.delete_collection("users").unwrap();
    let e = db.delete_collection("users").unwrap_err();
    assert_eq!(e.server_text(), Some("collection not found"));
    assert_eq!(db.list_collections().unwrap(), vec!["_default", "orders"]);
}
