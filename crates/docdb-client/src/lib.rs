//! Blocking Rust client for DocDB, the multi-tenant JSON document database.
//!
//! A [`Client`] connects to the server's Unix socket ([`Client::connect`]) or over
//! TCP with TLS ([`Client::connect_tcp`], [`Tls`]); [`Client::open_db`] gives a
//! [`Database`] handle on which documents are created, read, updated, deleted,
//! patched and scanned, alone, in a [`Batch`] (one request, per-op results) or in a
//! transaction (all or nothing). Failures are typed per response status
//! ([`Error::NotFound`], [`Error::Conflict`], [`Error::MemoryLimit`], [`Error::Server`]
//! with the server's stable text), and serde helpers convert documents to and from
//! Rust types.
//!
//! `Client` is `Clone + Send + Sync`: clones and threads share one connection and
//! keep many requests in flight at once, matched to their responses by request id
//! ([`Client::pool`] spreads them over several connections). If the connection breaks
//! (say the server restarts), requests in flight fail with [`Error::Io`] and the next
//! call reconnects, retrying with backoff for up to 2 s; database handles stay valid.
//!
//! ```no_run
//! use docdb_client::{Batch, Client, PatchOp};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct User {
//!     name: String,
//!     age: u32,
//! }
//!
//! # fn main() -> docdb_client::Result<()> {
//! let client = Client::connect("/tmp/docdb.sock")?;
//! let db = client.open_db("app")?;
//!
//! db.create_json(1, &User { name: "Ada".into(), age: 36 })?;
//! db.patch(1, &[PatchOp::set("/age", 37)])?;
//! let ada: User = db.read_json(1)?;
//! assert_eq!(ada.age, 37);
//!
//! match db.read(2) {
//!     Err(e) if e.is_not_found() => println!("no document 2"),
//!     other => println!("{other:?}"),
//! }
//!
//! // All or nothing.
//! db.transaction(&Batch::new().create(2, r#"{"n":2}"#).delete(1))?;
//!
//! for doc in db.scan().page_size(500) {
//!     let (id, value) = doc?;
//!     println!("{id}: {value}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Over TCP
//! A server started with `--listen HOST:PORT --tls-cert ... --tls-key ...` takes the
//! same requests over TLS, and requires a token on every TCP connection: give it in
//! the options so that every connection, reconnects included, authenticates first.
//! The host part of the address is the name the server's certificate must carry.
//!
//! ```no_run
//! use docdb_client::{Client, ClientOptions, Tls};
//!
//! # fn main() -> docdb_client::Result<()> {
//! let token = std::env::var("DOCDB_TOKEN").unwrap_or_default();
//! let client = Client::with_options_tcp(
//!     "db.example.com:7070",
//!     Tls::Ca("ca.pem".into()), // or Tls::System for a certificate from a public CA
//!     ClientOptions::new().token(token),
//! )?;
//! let db = client.open_db("tenant-a")?;
//! db.create(1, r#"{"a":1}"#)?;
//! # Ok(())
//! # }
//! ```
//!
//! A failed first connection is [`Error::ConnectTcp`], whose text says why (refused,
//! a certificate the CA did not sign, one that does not name the host).
//! [`Tls::Insecure`] (plain TCP) is refused unless the host is a loopback address.
//!
//! # Adding it
//! Not on crates.io yet: `cargo add docdb-client --path <docdb>/crates/docdb-client`
//! (or `--git` with the repository's URL), plus `serde` with its `derive` feature for
//! typed documents and `serde_json` for `serde_json::Value` ones. If no server is
//! listening, [`Client::connect`] fails with [`Error::Connect`], whose text says how
//! to start one.
//!
//! # Layout
//! - [`client`]: [`Client`], its options, reconnecting, [`Pending`] requests, the
//!   server-wide commands (stats, list_dbs, metrics, scheduler_stats).
//! - `connection`: one multiplexed connection — writer mutex, callers taking turns
//!   to read (no reader thread), requests matched by id; the transports (Unix socket,
//!   TCP, TLS).
//! - `tls`: [`Tls`], the rustls configuration, opening a TCP connection.
//! - [`database`]: [`Database`] and [`Collection`] — documents, collections, healing.
//! - [`batch`]: [`Batch`], Execute and Transaction replies.
//! - [`scan`]: the paging [`Scan`] iterator.
//! - [`query`]: the [`Query`] builder (filter, sort, projection) and its pages.
//! - [`patch`]: typed [`PatchOp`]s.
//! - [`stats`]: typed replies ([`Stats`], [`DbInfo`], [`HealStats`]).
//! - [`error`]: the typed [`Error`].
//!
//! The wire format itself is `docdb-protocol`'s; [`Client::call`] sends raw requests.

pub mod batch;
pub mod client;
mod connection;
pub mod database;
pub mod error;
pub mod index;
pub mod patch;
pub mod query;
pub mod scan;
pub mod stats;
mod tls;

pub use batch::{Batch, OpResult};
pub use client::{AuthInfo, Client, ClientOptions, Pending};
pub use database::{Collection, Database};
pub use error::{Error, Result};
pub use index::{IndexInfo, IndexSpec};
pub use patch::PatchOp;
pub use query::{Query, QueryIter, QueryPage, QueryRow};
pub use scan::{RawScan, Scan};
pub use stats::{DbInfo, HealStats, Stats, Unrecoverable};
pub use tls::Tls;

/// The protocol crate, for [`Client::call`] and [`Client::submit`].
pub use docdb_protocol as protocol;
