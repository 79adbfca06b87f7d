//! The shared codec fixture `clients/ts/test/fixtures/frames.json`: byte vectors that
//! the Rust codec and the TypeScript client's codec must both agree on.
//!
//! Every entry of the file is checked here: its wire bytes decode to its object and the
//! object encodes back to the same bytes; its invalid frames fail with the stated
//! request id and reason. The TypeScript suite checks the same file.
//!
//! To regenerate the file from the cases below (after changing them):
//! `DOCDB_WRITE_FIXTURES=1 cargo test -p docdb-protocol --test fixtures`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use docdb_protocol::frame::{
    decode_results, decode_status_results, encode_results, encode_status_results,
};
use docdb_protocol::{
    decode_request, decode_response, encode_request, encode_response, Command, Op, OpType, Request,
    Response, Status, MAX_FRAME, PER_OP_STATUS,
};
use serde_json::{json, Map, Value};

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/ts/test/fixtures/frames.json")
}

fn to_hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

fn from_hex(s: &str) -> Vec<u8> {
    assert!(s.len() & 1 == 0, "odd-length hex {s:?}");
    let nib = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("bad hex digit {:?} in {s:?}", c as char),
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| nib(p[0]) << 4 | nib(p[1]))
        .collect()
}

/// u64s are decimal strings in the fixture: JavaScript numbers stop being exact at 2^53.
fn u64_json(v: u64) -> Value {
    Value::String(v.to_string())
}

fn u64_of(v: &Value, what: &str) -> u64 {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} must be a decimal string, got {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} must be a string in {v}"))
}

fn request_json(r: &Request) -> Value {
    let ops: Vec<Value> = r
        .ops
        .iter()
        .map(|op| {
            let mut o = Map::new();
            o.insert("op_type".into(), json!(op.op_type));
            o.insert(
                "collection".into(),
                json!(String::from_utf8(op.collection.clone()).expect("UTF-8 collection")),
            );
            o.insert("doc_id".into(), u64_json(op.doc_id));
            o.insert(
                "patch".into(),
                op.patch
                    .as_deref()
                    .map_or(Value::Null, |p| json!(to_hex(p))),
            );
            o.insert("payload".into(), json!(to_hex(&op.payload)));
            Value::Object(o)
        })
        .collect();
    json!({
        "request_id": u64_json(r.request_id),
        "db_id": u64_json(r.db_id),
        "command": r.command,
        "ops": ops,
    })
}

fn request_of(v: &Value) -> Request {
    Request {
        request_id: u64_of(&v["request_id"], "request_id"),
        db_id: u64_of(&v["db_id"], "db_id"),
        command: v["command"].as_u64().expect("command") as u8,
        ops: v["ops"]
            .as_array()
            .expect("ops")
            .iter()
            .map(|o| Op {
                op_type: o["op_type"].as_u64().expect("op_type") as u8,
                collection: str_of(o, "collection").as_bytes().to_vec(),
                doc_id: u64_of(&o["doc_id"], "doc_id"),
                patch: o["patch"].as_str().map(from_hex),
                payload: from_hex(str_of(o, "payload")),
            })
            .collect(),
    }
}

fn response_json(r: &Response) -> Value {
    json!({
        "request_id": u64_json(r.request_id),
        "status": r.status,
        "data": to_hex(&r.data),
    })
}

fn response_of(v: &Value) -> Response {
    Response {
        request_id: u64_of(&v["request_id"], "request_id"),
        status: v["status"].as_u64().expect("status") as u8,
        data: from_hex(str_of(v, "data")),
    }
}

fn wire_request(r: &Request) -> Vec<u8> {
    let mut v = Vec::new();
    encode_request(r, &mut v);
    v
}

fn wire_response(r: &Response) -> Vec<u8> {
    let mut v = Vec::new();
    encode_response(r, &mut v);
    v
}

fn op(t: OpType, coll: &str, id: u64, payload: &str) -> Op {
    Op::new(t, coll, id, payload.as_bytes().to_vec())
}

/// A response case: name, response, and the Execute results its data encodes.
type ResponseCase<'a> = (&'a str, Response, Option<&'a Vec<Vec<u8>>>);

/// The cases the file is generated from.
fn generate() -> Value {
    const ABOVE_2_53: u64 = (1 << 53) + 1;
    let execute = Command::Execute as u8;
    let requests: Vec<(&str, Request)> =
        vec![
        (
            "OpenDB: ops[0].payload is the name",
            Request {
                request_id: 1,
                db_id: 0,
                command: Command::OpenDb as u8,
                ops: vec![op(OpType::Create, "", 0, "app")],
            },
        ),
        (
            "Execute: one create",
            Request {
                request_id: 7,
                db_id: 3,
                command: execute,
                ops: vec![op(OpType::Create, "users", 1, r#"{"a":1}"#)],
            },
        ),
        (
            "Execute: create, patch (op 7 carries its patch field before the payload), read",
            Request {
                request_id: 8,
                db_id: 3,
                command: execute,
                ops: vec![
                    op(OpType::Create, "users", 1, r#"{"a":1}"#),
                    Op::patch("", 1, br#"[{"op":"set","path":"/b","value":2}]"#.to_vec()),
                    op(OpType::Read, "users", 1, ""),
                ],
            },
        ),
        (
            "Execute: a patch op with a non-empty payload (patch first, then payload)",
            Request {
                request_id: 9,
                db_id: 3,
                command: execute,
                ops: vec![Op {
                    payload: b"xy".to_vec(),
                    ..Op::patch("c", 2, br#"[{"op":"remove","path":"/a/0"}]"#.to_vec())
                }],
            },
        ),
        (
            "Execute: unknown op types 5 and 9 are encoded as they are (no patch field)",
            Request {
                request_id: 10,
                db_id: 3,
                command: execute,
                ops: vec![
                    Op {
                        op_type: 5,
                        collection: b"c".to_vec(),
                        doc_id: 1,
                        patch: None,
                        payload: b"{}".to_vec(),
                    },
                    Op {
                        op_type: 9,
                        collection: Vec::new(),
                        doc_id: 0,
                        patch: None,
                        payload: Vec::new(),
                    },
                ],
            },
        ),
        (
            "Execute: u64 ids above 2^53 (request id 2^53+1, db id u64::MAX, doc id u64::MAX-1)",
            Request {
                request_id: ABOVE_2_53,
                db_id: u64::MAX,
                command: execute,
                ops: vec![op(OpType::Read, "big", u64::MAX - 1, "")],
            },
        ),
        (
            "Execute with the per-op status flag (3 | 0x80 = 131)",
            Request {
                request_id: 12,
                db_id: 4,
                command: execute | PER_OP_STATUS,
                ops: vec![op(OpType::Create, "t", 1, "{}"), op(OpType::Read, "t", 2, "")],
            },
        ),
        (
            "Transaction (13): create, update, delete",
            Request {
                request_id: 11,
                db_id: 4,
                command: Command::Transaction as u8,
                ops: vec![
                    op(OpType::Create, "t", 1, "[1,2]"),
                    op(OpType::Update, "t", 2, r#""s""#),
                    op(OpType::Delete, "t", 3, ""),
                ],
            },
        ),
        (
            "Scan (15): doc_id is start-after, payload the options",
            Request {
                request_id: 12,
                db_id: 4,
                command: Command::Scan as u8,
                ops: vec![op(OpType::Read, "items", 2500, r#"{"limit":1000}"#)],
            },
        ),
        (
            "Stats (4): no ops",
            Request {
                request_id: 13,
                db_id: 0,
                command: Command::Stats as u8,
                ops: vec![],
            },
        ),
        (
            "CreateCollection (5) with a 64-byte name and a UTF-8 one",
            Request {
                request_id: 14,
                db_id: 4,
                command: Command::CreateCollection as u8,
                ops: vec![
                    op(OpType::Create, &"c".repeat(64), 0, ""),
                    op(OpType::Create, "café", 0, ""),
                ],
            },
        ),
        (
            "unknown command 99",
            Request {
                request_id: 15,
                db_id: 0,
                command: 99,
                ops: vec![],
            },
        ),
    ];
    let stats: Vec<u8> = [3u64, 2, 1 << 40, 4096, ABOVE_2_53]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let results_ok: Vec<Vec<u8>> = vec![br#"{"a":1}"#.to_vec(), vec![], vec![]];
    let statuses: Vec<(u8, Vec<u8>)> = vec![
        (Status::Conflict, b"document already exists".to_vec()),
        (Status::Ok, vec![]),
        (Status::NotFound, b"document not found".to_vec()),
        (Status::Ok, br#"{"x":1}"#.to_vec()),
        (Status::Error, b"unknown operation type".to_vec()),
    ]
    .into_iter()
    .map(|(s, d)| (s as u8, d))
    .collect();
    let responses: Vec<ResponseCase> = vec![
        (
            "OpenDB OK: u64 id",
            Response::new(1, Status::Ok, 42u64.to_le_bytes().to_vec()),
            None,
        ),
        (
            "NotFound with its text",
            Response::new(9, Status::NotFound, b"document not found".to_vec()),
            None,
        ),
        (
            "Execute OK: results payload (read document, then two empty results)",
            Response::new(8, Status::Ok, encode_results(&results_ok)),
            Some(&results_ok),
        ),
        (
            "Execute failed (v0.3 error contract): the first failed op's status, its text alone",
            Response::new(10, Status::Conflict, b"document already exists".to_vec()),
            None,
        ),
        ("Stats: 5 x u64", Response::new(13, Status::Ok, stats), None),
        (
            "a status code from a newer server (7) is kept",
            Response {
                request_id: 16,
                status: 7,
                data: b"new".to_vec(),
            },
            None,
        ),
        (
            "empty data, request id u64::MAX",
            Response::new(u64::MAX, Status::Ok, Vec::new()),
            None,
        ),
        (
            "request id 2^53+1",
            Response::new(
                ABOVE_2_53,
                Status::MemoryLimit,
                b"memory limit exceeded".to_vec(),
            ),
            None,
        ),
    ];

    let good = wire_request(&requests[2].1);
    let frame = &good[4..];
    let mut too_many_ops = frame.to_vec();
    too_many_ops[17..21].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut long_coll = frame.to_vec();
    long_coll[22..24].copy_from_slice(&300u16.to_le_bytes());
    let mut trailing = frame.to_vec();
    trailing.push(0);
    let invalid_requests: Vec<(&str, Vec<u8>)> = vec![
        ("shorter than a request id", frame[..7].to_vec()),
        ("header cut after the request id", frame[..12].to_vec()),
        ("op count larger than the frame holds", too_many_ops),
        ("collection length past the frame", long_coll),
        ("cut inside the patch", frame[..60].to_vec()),
        ("trailing byte", trailing),
    ];
    let resp = wire_response(&Response::new(5, Status::Ok, b"hello".to_vec()));
    let rframe = &resp[4..];
    let mut long_data = rframe.to_vec();
    long_data[9..13].copy_from_slice(&6u32.to_le_bytes());
    let mut rtrailing = rframe.to_vec();
    rtrailing.push(b'!');
    let invalid_responses: Vec<(&str, Vec<u8>)> = vec![
        ("shorter than a request id", rframe[..3].to_vec()),
        ("header cut after the status", rframe[..9].to_vec()),
        ("data length past the frame", long_data),
        ("trailing byte", rtrailing),
    ];
    let invalid_results: Vec<(&str, Vec<u8>)> = vec![
        ("truncated count", vec![1, 0]),
        ("count larger than the data holds", vec![255, 255, 255, 255]),
        (
            "result length past the data",
            vec![1, 0, 0, 0, 5, 0, 0, 0, b'a'],
        ),
        ("trailing byte", vec![0, 0, 0, 0, 0]),
    ];

    let err_of = |e: docdb_protocol::DecodeError| {
        json!({
            "request_id": e.request_id.map_or(Value::Null, u64_json),
            "reason": e.reason,
        })
    };
    json!({
        "about": "Shared codec fixture of DocDB's wire protocol (SPEC §8), checked by crates/docdb-protocol/tests/fixtures.rs and clients/ts/test/codec.test.js. u64s are decimal strings; bytes are lower-case hex. `wire` is the full message: u32 length prefix + frame. Regenerate with DOCDB_WRITE_FIXTURES=1 cargo test -p docdb-protocol --test fixtures.",
        "max_frame": MAX_FRAME,
        "requests": requests.iter().map(|(name, r)| json!({
            "name": name,
            "request": request_json(r),
            "wire": to_hex(&wire_request(r)),
        })).collect::<Vec<_>>(),
        "responses": responses.iter().map(|(name, r, results)| {
            let mut v = json!({
                "name": name,
                "response": response_json(r),
                "wire": to_hex(&wire_response(r)),
            });
            if let Some(rs) = results {
                v["results"] = json!(rs.iter().map(|x| to_hex(x)).collect::<Vec<_>>());
            }
            v
        }).chain(std::iter::once({
            let r = Response::new(14, Status::Ok, encode_status_results(&statuses));
            json!({
                "name": "Execute with per-op statuses (flag 0x80): OK, per op u8 status, u32 len, bytes",
                "response": response_json(&r),
                "wire": to_hex(&wire_response(&r)),
                "statuses": statuses.iter().map(|(s, d)| json!([s, to_hex(d)])).collect::<Vec<_>>(),
            })
        })).collect::<Vec<_>>(),
        "invalid_requests": invalid_requests.iter().map(|(name, f)| json!({
            "name": name,
            "frame": to_hex(f),
            "error": err_of(decode_request(f).expect_err(name)),
        })).collect::<Vec<_>>(),
        "invalid_responses": invalid_responses.iter().map(|(name, f)| json!({
            "name": name,
            "frame": to_hex(f),
            "error": err_of(decode_response(f).expect_err(name)),
        })).collect::<Vec<_>>(),
        "invalid_results": invalid_results.iter().map(|(name, f)| json!({
            "name": name,
            "data": to_hex(f),
            "error": err_of(decode_results(f).expect_err(name)),
        })).collect::<Vec<_>>(),
    })
}

fn load() -> Value {
    let path = fixture_path();
    static WRITTEN: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("DOCDB_WRITE_FIXTURES").is_some() {
        WRITTEN.call_once(|| {
            // Write-and-rename: other test processes may be reading it.
            let text = serde_json::to_string_pretty(&generate()).unwrap() + "\n";
            let tmp = path.with_extension(format!("json.{}", std::process::id()));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        });
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn entries<'a>(f: &'a Value, key: &str) -> &'a Vec<Value> {
    f[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture has no {key} array"))
}

fn check_length_prefix(wire: &[u8], name: &str) {
    assert!(wire.len() >= 4, "{name}: no length prefix");
    let len = u32::from_le_bytes(wire[..4].try_into().unwrap()) as usize;
    assert_eq!(len, wire.len() - 4, "{name}: length prefix");
}

fn check_error(got: docdb_protocol::DecodeError, want: &Value, name: &str) {
    let want_id = match &want["request_id"] {
        Value::Null => None,
        v => Some(u64_of(v, "error.request_id")),
    };
    assert_eq!(got.request_id, want_id, "{name}: request id of the error");
    assert_eq!(got.reason, str_of(want, "reason"), "{name}: reason");
}

#[test]
fn requests_decode_to_their_objects_and_encode_back() {
    let f = load();
    assert_eq!(f["max_frame"].as_u64(), Some(MAX_FRAME as u64));
    for e in entries(&f, "requests") {
        let name = str_of(e, "name");
        let wire = from_hex(str_of(e, "wire"));
        check_length_prefix(&wire, name);
        let decoded = decode_request(&wire[4..]).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(decoded, request_of(&e["request"]), "{name}: decoded");
        assert_eq!(wire_request(&decoded), wire, "{name}: re-encoded");
        assert_eq!(request_json(&decoded), e["request"], "{name}: as JSON");
    }
}

#[test]
fn responses_decode_to_their_objects_and_encode_back() {
    let f = load();
    for e in entries(&f, "responses") {
        let name = str_of(e, "name");
        let wire = from_hex(str_of(e, "wire"));
        check_length_prefix(&wire, name);
        let decoded = decode_response(&wire[4..]).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(decoded, response_of(&e["response"]), "{name}: decoded");
        assert_eq!(wire_response(&decoded), wire, "{name}: re-encoded");
        if let Some(results) = e.get("results") {
            let want: Vec<Vec<u8>> = results
                .as_array()
                .expect("results")
                .iter()
                .map(|h| from_hex(h.as_str().expect("hex")))
                .collect();
            let got = decode_results(&decoded.data).unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(got, want, "{name}: results");
            assert_eq!(
                encode_results(&got),
                decoded.data,
                "{name}: results re-encoded"
            );
        }
        if let Some(statuses) = e.get("statuses") {
            let want: Vec<(u8, Vec<u8>)> = statuses
                .as_array()
                .expect("statuses")
                .iter()
                .map(|p| {
                    let s = p[0].as_u64().expect("status") as u8;
                    (s, from_hex(p[1].as_str().expect("hex")))
                })
                .collect();
            let got =
                decode_status_results(&decoded.data).unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(got, want, "{name}: statuses");
            assert_eq!(
                encode_status_results(&got),
                decoded.data,
                "{name}: statuses re-encoded"
            );
        }
    }
}

#[test]
fn invalid_frames_fail_with_their_request_id_and_reason() {
    let f = load();
    for e in entries(&f, "invalid_requests") {
        let name = str_of(e, "name");
        let err = decode_request(&from_hex(str_of(e, "frame"))).expect_err(name);
        check_error(err, &e["error"], name);
    }
    for e in entries(&f, "invalid_responses") {
        let name = str_of(e, "name");
        let err = decode_response(&from_hex(str_of(e, "frame"))).expect_err(name);
        check_error(err, &e["error"], name);
    }
    for e in entries(&f, "invalid_results") {
        let name = str_of(e, "name");
        let err = decode_results(&from_hex(str_of(e, "data"))).expect_err(name);
        check_error(err, &e["error"], name);
    }
}

/// The fixture must keep covering what the brief asked for, whoever edits it.
#[test]
fn fixture_covers_the_cases_both_codecs_must_agree_on() {
    let f = load();
    let reqs: Vec<Request> = entries(&f, "requests")
        .iter()
        .map(|e| request_of(&e["request"]))
        .collect();
    let ops = || reqs.iter().flat_map(|r| r.ops.iter());
    assert!(
        ops()
            .any(|o| o.op_type == OpType::Patch as u8
                && o.patch.as_ref().is_some_and(|p| !p.is_empty())),
        "a patch op with its patch field"
    );
    assert!(ops().any(|o| o.kind().is_none()), "an unknown op type");
    assert!(
        reqs.iter()
            .any(|r| r.command == Command::Execute as u8 && r.ops.len() > 1),
        "a multi-op Execute"
    );
    assert!(
        reqs.iter().any(|r| r.request_id > 1 << 53
            || r.db_id > 1 << 53
            || r.ops.iter().any(|o| o.doc_id > 1 << 53)),
        "a u64 above 2^53"
    );
    assert!(
        entries(&f, "responses")
            .iter()
            .any(|e| e.get("results").is_some()),
        "an Execute results payload"
    );
    assert!(
        entries(&f, "responses")
            .iter()
            .any(|e| e.get("statuses").is_some()),
        "a per-op status payload"
    );
    assert!(
        reqs.iter()
            .any(|r| r.command == Command::Execute as u8 | PER_OP_STATUS),
        "an Execute with the per-op status flag"
    );
}
