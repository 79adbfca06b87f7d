//! A tour of the client against a running server:
//!
//! ```text
//! docdb serve --socket /tmp/docdb.sock &
//! cargo run -p docdb-client --example quickstart -- /tmp/docdb.sock
//! ```
//!
//! Opens the database `quickstart`, then creates, reads, patches, scans and runs a
//! transaction, printing each result. Runs again cleanly: it starts by deleting what
//! a previous run left.

use std::process::ExitCode;

use docdb_client::{Batch, Client, PatchOp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct User {
    name: String,
    age: u32,
    #[serde(default)]
    tags: Vec<String>,
}

fn main() -> ExitCode {
    let socket = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/docdb.sock".into());
    match run(&socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(socket: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(socket).map_err(|e| format!("connect to {socket}: {e}"))?;

    let db = client.open_db("quickstart")?;
    println!("opened database {:?} with id {}", db.name(), db.id());

    // Leave no trace of an earlier run.
    for id in 1..=5 {
        match db.delete(id) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }

    // Create and read, as raw JSON bytes and through serde.
    db.create(1, r#"{"name":"Ada","age":36}"#)?;
    db.create_json(
        2,
        &User {
            name: "Grace".into(),
            age: 45,
            tags: vec![],
        },
    )?;
    println!("read 1: {}", String::from_utf8_lossy(&db.read(1)?));
    let grace: User = db.read_json(2)?;
    println!("read 2: {grace:?}");

    // Typed errors per status.
    match db.create(1, r#"{"again":true}"#) {
        Err(e) if e.is_conflict() => println!("create 1 again: conflict ({e})"),
        other => println!("create 1 again: unexpected {other:?}"),
    }
    match db.read(99) {
        Err(e) if e.is_not_found() => println!("read 99: not found ({e})"),
        other => println!("read 99: unexpected {other:?}"),
    }

    // Patch: all operations or none.
    db.patch(
        1,
        &[
            PatchOp::set("/age", 37),
            PatchOp::set("/tags", serde_json::json!(["math"])),
            PatchOp::insert("/tags/1", "computing"),
        ],
    )?;
    println!("patched 1: {}", String::from_utf8_lossy(&db.read(1)?));

    // A batch: each op on its own, one result per op.
    let results = db.execute(
        &Batch::new()
            .create(3, r#"{"name":"Alan","age":41}"#)
            .read(3)
            .read(404),
    )?;
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(Some(doc)) => println!("batch op {i}: {}", String::from_utf8_lossy(doc)),
            Ok(None) => println!("batch op {i}: ok"),
            Err(e) => println!("batch op {i}: error: {e}"),
        }
    }

    // A transaction: the failing delete of 404 undoes the create of 4.
    let tx = Batch::new()
        .create(4, r#"{"name":"Edsger","age":72}"#)
        .delete(404);
    match db.transaction(&tx) {
        Ok(_) => println!("transaction: committed (unexpected)"),
        Err(e) => println!(
            "transaction: rolled back ({e}); document 4 exists: {}",
            db.read(4).is_ok()
        ),
    }
    let out = db.transaction(
        &Batch::new()
            .create(4, r#"{"name":"Edsger","age":72}"#)
            .create(5, r#"{"name":"Barbara","age":35}"#)
            .read(4),
    )?;
    println!(
        "transaction: committed, read 4 inside it: {}",
        out[2]
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
    );

    // Scan in id order, two documents per request.
    for row in db.scan().page_size(2) {
        let (id, doc) = row?;
        println!("scan: {id} => {doc}");
    }

    let stats = client.stats()?;
    println!("server stats: {stats:?}");
    Ok(())
}
