//! ListCollections (7): JSON array of the database's collection names, sorted.

use docdb_core::Database;
use docdb_protocol::Status;

use super::json;

pub fn run(db: &Database) -> (Status, Vec<u8>) {
    (Status::Ok, json(&db.list_collections()))
}
