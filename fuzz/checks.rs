//! What each fuzz target checks, in one place: the targets (`fuzz_targets/*.rs`, nightly)
//! and the stable replay of the committed corpora (`crates/docdb/tests/fuzz_corpora.rs`)
//! include this file, so the normal suite checks the corpora exactly as the fuzzer did.
//! Each check panics on a bug and returns how much of the input decoded, so the replay
//! can tell a corpus that exercises the decoder from one that is all rejects.

use std::sync::OnceLock;

use docdb_core::data::record::{decode_header, payload_ok};
use docdb_core::wal::record::decode;
use docdb_core::{Config, Database, IndexDef, Query};
use docdb_protocol::frame::decode_results;
use docdb_protocol::{decode_request, decode_response, encode_request, encode_response};

/// The server's request frame decoder never panics, and what it accepts re-encodes to
/// the same bytes. True when `data` decoded.
pub fn request_frame(data: &[u8]) -> bool {
    let Ok(req) = decode_request(data) else {
        return false;
    };
    let mut out = Vec::new();
    encode_request(&req, &mut out);
    assert_eq!(&out[4..], data, "a decoded request re-encodes differently");
    true
}

/// The clients' response decoders (frame and Execute results) never panic; an accepted
/// frame re-encodes to the same bytes. True when `data` decoded as a response.
pub fn response_frame(data: &[u8]) -> bool {
    let ok = match decode_response(data) {
        Ok(resp) => {
            let mut out = Vec::new();
            encode_response(&resp, &mut out);
            assert_eq!(&out[4..], data, "a decoded response re-encodes differently");
            let _ = decode_results(&resp.data);
            true
        }
        Err(_) => false,
    };
    let _ = decode_results(data);
    ok
}

/// WAL replay's record decoder never panics on damaged or hostile bytes, and each
/// record it accepts lies within the input. Returns the number of records decoded.
pub fn wal_record(data: &[u8]) -> usize {
    let mut pos = 0;
    let mut records = 0;
    while let Ok((_, n)) = decode(&data[pos..]) {
        assert!(
            n > 0 && n <= data.len() - pos,
            "a record of {n} bytes at {pos}"
        );
        pos += n;
        records += 1;
    }
    records
}

/// The data-file record header decoder (index rebuild, verify) never panics. True when
/// a whole record (header and payload) decoded with a matching payload checksum.
pub fn data_record(data: &[u8]) -> bool {
    let Ok(h) = decode_header(data) else {
        return false;
    };
    match data.get(h.header_len()..h.total_len()) {
        Some(p) => payload_ok(&h, p),
        None => false,
    }
}

/// The database the query check runs against, made once per process in a fresh
/// directory under the system's temp dir (those of processes no longer running are
/// removed first): 40 documents of mixed shapes (numbers, strings, nulls, nested
/// objects, arrays, missing fields) in `_default`, an index that never held an array
/// (`by_n`: exact plans) and one that has (`by_tags_n`).
pub fn query_db() -> &'static Database {
    static DB: OnceLock<Database> = OnceLock::new();
    DB.get_or_init(|| {
        const PREFIX: &str = "docdb-fuzz-query-";
        let tmp = std::env::temp_dir();
        for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let gone = name
                .strip_prefix(PREFIX)
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
            if gone {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = tmp.join(format!("{PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = Database::open(&dir, Config::default()).expect("open the query database");
        for id in 0..40u64 {
            let doc = match id % 5 {
                0 => format!(r#"{{"n":{id},"s":"s{}","a":{{"b":{}}}}}"#, id % 7, id % 3),
                1 => format!(
                    r#"{{"n":{},"tags":["t{}","u"],"s":null}}"#,
                    id as f64 / 3.0,
                    id % 4
                ),
                2 => format!(
                    r#"{{"s":"s{}","tags":"t{}","a":{{"b":[1,{{"c":{id}}}]}}}}"#,
                    id % 7,
                    id % 2
                ),
                3 => format!(r#"{{"n":"{id}","tags":[],"a":[{{"b":{id}}}]}}"#),
                _ => format!(r#"{{"x":[[{id}]],"n":{}}}"#, -(id as i64)),
            };
            db.create("_default", id, doc.as_bytes())
                .expect("create a document");
        }
        for (name, fields) in [
            ("by_n", vec![("n", 1)]),
            ("by_tags_n", vec![("tags", 1), ("n", -1)]),
        ] {
            let def = IndexDef {
                name: name.into(),
                fields: fields
                    .into_iter()
                    .map(|(f, d)| (f.to_string(), d))
                    .collect(),
                unique: false,
            };
            db.create_index("_default", def).expect("create an index");
        }
        db
    })
}

/// The query decoder (filter, sort, projection, limit, `after` cursor, explain) never
/// panics, and a query it accepts runs (planner and executor, with and without a work
/// budget and a small byte budget) to a page or a clear error, never a panic. A page
/// within a budget is the page without one. True when `data` parsed as a query.
pub fn query(data: &[u8]) -> bool {
    let Ok(q) = Query::parse(data) else {
        return false;
    };
    let db = query_db();
    let _ = db.query_page("_default", &q, 300);
    if let Ok(read) = db.read_at("_default") {
        let full = read.query_page(&q, usize::MAX);
        if let (Ok(full), Ok(Some(light))) = (&full, read.query_page_within(&q, usize::MAX, 16)) {
            assert_eq!(&light, full, "a page within a budget differs from the page");
        }
    }
    true
}

/// The patch decoder and applier (Patch op, type 7: the client's operations JSON) never
/// panic on a fixed nested document; a patch it applies leaves a JSON object within the
/// depth limit. True when `data` applied.
pub fn patch(data: &[u8]) -> bool {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    let doc = DOC.get_or_init(|| {
        serde_json::from_str(
            r#"{"a":{"b":[1,{"c":null},[2,3]],"d":"x"},"e":[],"f":0.5,"g":{"h":{"i":{}}}}"#,
        )
        .expect("the patch check's document")
    });
    let limits = docdb_core::patch::Limits::default();
    match docdb_core::patch::apply_limited(doc, data, limits) {
        Ok(v) => {
            assert!(v.is_object(), "a patch made the document a non-object");
            let text = serde_json::to_vec(&v).expect("a patched document serialises");
            let depth = docdb_core::json::nesting_depth(&text, limits.max_depth);
            assert!(
                depth <= limits.max_depth,
                "a patch nested the document {depth} deep"
            );
            true
        }
        Err(_) => false,
    }
}
