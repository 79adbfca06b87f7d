#![allow(clippy::unwrap_used)]
//! Malformed input on the socket (SPEC §8): truncated frames, lying lengths, oversize
//! length prefixes, garbage. Each gets an Error reply (with its request id when the
//! first 8 bytes were readable) and/or a close promptly (`PROMPT`); nothing hangs, the
//! server stays up, and a client connected meanwhile keeps getting correct answers.

mod common;
mod support;

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::Server;
use docdb_protocol::{Command as Cmd, Response, MAX_FRAME};
use support::*;

/// What a bad frame must produce.
enum Expect {
    /// An Error reply with this request id, then a close.
    Error(u64),
    /// An Error reply with this request id and exactly this text, then a close.
    ErrorText(u64, &'static str),
    /// Incomplete input followed by end of stream: a close, with or without an Error
    /// reply first.
    Close,
}

/// "Promptly": well under the frame timeout a server waiting for the rest of a frame
/// would wait for (set to `FRAME_TIMEOUT` here), and loose enough for a loaded 2-core
/// VM (an answer takes milliseconds unloaded).
const PROMPT: Duration = Duration::from_secs(15);
/// How long each read waits for the answer and the close: past `PROMPT`, so a slow
/// answer fails with its time rather than as "never closed".
const WAIT: Duration = Duration::from_secs(20);

/// The servers here wait this long inside a frame (default 10 s), so that "promptly"
/// can be generous and still tell an answer from a frame timeout.
const FRAME_TIMEOUT: &str = "[net]\nframe_timeout = \"60s\"\n";

fn server() -> Server {
    Server::start_with_config(FRAME_TIMEOUT, &[])
}

/// A request frame body with one create op, for mutilating.
fn sample_body(rid: u64, db: u64) -> Vec<u8> {
    body(
        rid,
        db,
        Cmd::Execute as u8,
        vec![create_op("coll", 9, r#"{"a":1}"#)],
    )
}
// Layout of `sample_body`: 0..8 rid, 8..16 db, 16 cmd, 17..21 count, 21 op type,
// 22..24 coll len, 24..28 "coll", 28..36 doc id, 36..40 payload len, 40.. payload.

fn cases(db: u64) -> Vec<(&'static str, Vec<u8>, bool, Expect)> {
    let mut v: Vec<(&'static str, Vec<u8>, bool, Expect)> = Vec::new();
    let good = sample_body(101, db);

    // Truncated: the prefix promises more than is sent, then the write side closes.
    let mut t = prefixed(&good);
    t.truncate(4 + 30);
    v.push(("truncated body", t, true, Expect::Close));
    v.push((
        "truncated length prefix",
        vec![0x10, 0x00],
        true,
        Expect::Close,
    ));
    let mut t = prefixed(&good);
    t.truncate(4 + 5);
    v.push(("truncated before the request id", t, true, Expect::Close));

    // Complete frames that do not decode.
    v.push(("empty frame", prefixed(&[]), false, Expect::Error(0)));
    v.push((
        "shorter than a header, id readable",
        prefixed(&good[..12]),
        false,
        Expect::Error(101),
    ));
    v.push((
        "shorter than the id",
        prefixed(&good[..6]),
        false,
        Expect::Error(0),
    ));
    let mut b = sample_body(102, db);
    b[17..21].copy_from_slice(&1000u32.to_le_bytes());
    v.push((
        "op count larger than the frame",
        prefixed(&b),
        false,
        Expect::Error(102),
    ));
    let mut b = sample_body(103, db);
    b[17..21].copy_from_slice(&u32::MAX.to_le_bytes());
    v.push(("op count u32::MAX", prefixed(&b), false, Expect::Error(103)));
    let mut b = sample_body(104, db);
    b[17..21].copy_from_slice(&2u32.to_le_bytes());
    v.push((
        "op count one more than sent",
        prefixed(&b),
        false,
        Expect::Error(104),
    ));
    // A collection name over 64 bytes in a well-formed frame is not malformed: it is
    // an ordinary error reply (connection_bounds.rs).
    let mut b = sample_body(107, db);
    b[22..24].copy_from_slice(&60u16.to_le_bytes());
    v.push((
        "collection length past the frame",
        prefixed(&b),
        false,
        Expect::Error(107),
    ));
    let mut b = sample_body(108, db);
    b[36..40].copy_from_slice(&1000u32.to_le_bytes());
    v.push((
        "payload length larger than the frame",
        prefixed(&b),
        false,
        Expect::Error(108),
    ));
    let mut b = sample_body(109, db);
    b[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
    v.push((
        "payload length u32::MAX",
        prefixed(&b),
        false,
        Expect::Error(109),
    ));
    let mut b = body(
        110,
        db,
        Cmd::Execute as u8,
        vec![docdb_protocol::Op::patch("", 9, b"[]".to_vec())],
    );
    let at = b.len() - 4 - 4 - 2; // patch_len field: before "[]" and payload_len
    b[at..at + 4].copy_from_slice(&5000u32.to_le_bytes());
    v.push((
        "patch length larger than the frame",
        prefixed(&b),
        false,
        Expect::Error(110),
    ));
    let mut b = sample_body(111, db);
    b.extend_from_slice(b"junk");
    v.push(("trailing bytes", prefixed(&b), false, Expect::Error(111)));
    let mut b = sample_body(112, db);
    b.truncate(38);
    v.push((
        "frame ends inside the payload length",
        prefixed(&b),
        false,
        Expect::Error(112),
    ));

    // Oversize length prefixes: refused before reading the body.
    for (name, len) in [
        ("length MAX_FRAME + 1", MAX_FRAME as u32 + 1),
        ("length 16 MiB + 4097", 16 * 1024 * 1024 + 4097),
        ("length u32::MAX", u32::MAX),
        ("length 1 GiB", 1 << 30),
    ] {
        let mut f = len.to_le_bytes().to_vec();
        f.extend_from_slice(&good);
        v.push((
            name,
            f,
            false,
            Expect::ErrorText(0, "frame size exceeds maximum"),
        ));
    }

    // Garbage.
    v.push((
        "an HTTP request",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        true,
        Expect::ErrorText(0, "frame size exceeds maximum"),
    ));
    v.push((
        "0xff bytes",
        vec![0xff; 64],
        true,
        Expect::ErrorText(0, "frame size exceeds maximum"),
    ));
    // A plausible length followed by that many bytes of junk.
    let mut g = 40u32.to_le_bytes().to_vec();
    g.extend(std::iter::repeat_n(0xAB, 40));
    v.push((
        "40 bytes of 0xAB",
        g,
        true,
        Expect::Error(0xABAB_ABAB_ABAB_ABAB),
    ));
    let mut g = 20u32.to_le_bytes().to_vec();
    g.extend((0..20u8).map(|i| i.wrapping_mul(37)));
    v.push((
        "20 bytes of junk",
        g,
        true,
        Expect::Error(u64::from_le_bytes([0, 37, 74, 111, 148, 185, 222, 3])),
    ));
    // Pseudo-random garbage of several sizes (deterministic).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for n in [3usize, 17, 100, 1000] {
        let g: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        v.push(("random bytes", g, true, Expect::Close));
    }
    v
}

/// Sends `bytes` on a fresh connection, optionally closes the write side, and checks
/// what comes back, and how soon.
fn check_case(s: &Server, name: &str, bytes: &[u8], shut: bool, expect: &Expect) {
    let mut st = raw(s);
    let t = Instant::now();
    // The server may close as soon as it has seen enough: a failed write is fine.
    let _ = st.write_all(bytes);
    if shut {
        let _ = st.shutdown(Shutdown::Write);
    }
    let (replies, closed) = read_until_closed(&mut st, t + WAIT);
    let elapsed = t.elapsed();
    assert!(
        closed,
        "{name}: the server neither replied-and-closed nor closed (replies {replies:?})"
    );
    assert!(
        elapsed <= PROMPT,
        "{name}: took {elapsed:?} to answer and close"
    );
    let check_err = |r: &Response, rid: u64| {
        assert_eq!(r.status, 1, "{name}: {r:?}");
        assert_eq!(r.request_id, rid, "{name}: request id of the Error reply");
        assert!(!r.data.is_empty(), "{name}: an error text");
    };
    match expect {
        Expect::Error(rid) => {
            assert_eq!(
                replies.len(),
                1,
                "{name}: exactly one Error reply: {replies:?}"
            );
            check_err(&replies[0], *rid);
        }
        Expect::ErrorText(rid, want) => {
            assert_eq!(
                replies.len(),
                1,
                "{name}: exactly one Error reply: {replies:?}"
            );
            check_err(&replies[0], *rid);
            assert_eq!(text(&replies[0]), *want, "{name}");
        }
        Expect::Close => {
            assert!(replies.len() <= 1, "{name}: {replies:?}");
            if let Some(r) = replies.first() {
                assert_eq!(r.status, 1, "{name}: {r:?}");
            }
        }
    }
}

#[test]
fn every_malformed_frame_gets_an_error_or_a_close_and_nobody_else_notices() {
    let mut s = server();
    let mut c = s.connect();
    let db = c.open_db("target");
    ok(c.call(db, Cmd::CreateCollection, vec![coll_op("coll")]));
    let bystander = Bystander::start(&s.socket, "bystander");
    let before = bystander.count();
    for (name, bytes, shut, expect) in cases(db) {
        check_case(&s, name, &bytes, shut, &expect);
        assert!(alive(&mut s), "server died on {name}");
        // The other client is answered correctly in between every two bad frames.
        bystander.wait_more(1);
    }
    let during = bystander.count() - before;
    // The established connection of this thread is unaffected too.
    assert_eq!(c.create(db, "coll", 1, "{}"), (0, Vec::new()));
    let n = bystander.stop_after(3);
    eprintln!("bystander: {during} round trips during the bad frames, {n} in all");
    // No bad frame applied anything.
    assert_eq!(
        c.read(db, "coll", 9).0,
        2,
        "no malformed create was applied"
    );
    // A fresh connection works.
    let mut fresh = s.connect();
    assert_eq!(fresh.read(db, "coll", 1), (0, b"{}".to_vec()));
    // And the errors were counted.
    let m = metrics(&mut fresh);
    assert!(
        m.contains(r#"docdb_errors_total{category="validation"}"#),
        "{m}"
    );
}

#[test]
fn requests_before_a_bad_frame_are_answered_then_the_connection_closes() {
    let s = server();
    let mut c = s.connect();
    let db = c.open_db("ordered");
    let mut st = raw(&s);
    let mut bytes = Vec::new();
    for i in 1..=20u64 {
        bytes.extend(frame(
            i,
            db,
            Cmd::Execute as u8,
            vec![create_op("", i, "{}")],
        ));
    }
    let mut bad = sample_body(99, db);
    bad[17..21].copy_from_slice(&77u32.to_le_bytes());
    bytes.extend(prefixed(&bad));
    // Anything after the bad frame is not read.
    bytes.extend(frame(
        100,
        db,
        Cmd::Execute as u8,
        vec![create_op("", 100, "{}")],
    ));
    let t = Instant::now();
    st.write_all(&bytes).unwrap();
    let (replies, closed) = read_until_closed(&mut st, t + WAIT);
    assert!(closed, "closed after the bad frame");
    assert!(t.elapsed() <= PROMPT, "{:?}", t.elapsed());
    let mut ids: Vec<u64> = replies.iter().map(|r| r.request_id).collect();
    ids.sort_unstable();
    let mut want: Vec<u64> = (1..=20).collect();
    want.push(99);
    assert_eq!(
        ids, want,
        "each request before the bad frame answered once, plus the Error"
    );
    for r in &replies {
        if r.request_id == 99 {
            assert_eq!(r.status, 1);
        } else {
            assert_eq!(r.status, 0, "{r:?}");
        }
    }
    for i in 1..=20 {
        assert_eq!(
            c.read(db, "", i).0,
            0,
            "write {i} was acknowledged and is there"
        );
    }
    assert_eq!(
        c.read(db, "", 100).0,
        2,
        "nothing after the bad frame was applied"
    );
}

#[test]
fn a_stalled_half_frame_does_not_block_others() {
    // A client that sends half a frame and then nothing (no close) must not hold up
    // anyone; the server must not need it to finish.
    let s = server();
    let bystander = Bystander::start(&s.socket, "others");
    let mut stalled = Vec::new();
    for i in 0..20u64 {
        let mut st = raw(&s);
        let f = prefixed(&sample_body(i, 1));
        st.write_all(&f[..f.len() / 2]).unwrap();
        stalled.push(st);
    }
    // A huge length prefix with a trickle of body.
    let mut st = raw(&s);
    st.write_all(&(MAX_FRAME as u32).to_le_bytes()).unwrap();
    st.write_all(&[0u8; 100]).unwrap();
    stalled.push(st);
    std::thread::sleep(Duration::from_millis(300));
    let mut c = s.connect();
    let db = c.open_db("meanwhile");
    let t = Instant::now();
    for i in 1..=50 {
        assert_eq!(c.create(db, "", i, "{}").0, 0);
    }
    // Not held up until the stalled frames time out (FRAME_TIMEOUT).
    assert!(t.elapsed() <= PROMPT, "{:?}", t.elapsed());
    bystander.stop_after(3);
    // The stalled ones are closed when their clients give up.
    for mut st in stalled {
        st.shutdown(Shutdown::Write).unwrap();
        let t = Instant::now();
        let (_, closed) = read_until_closed(&mut st, t + WAIT);
        assert!(closed && t.elapsed() <= PROMPT, "{:?}", t.elapsed());
    }
}
