#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Stalled connections do not hold slots forever (SPEC §8.2, issue 11 item 3): a
//! connection silent for `net.frame_timeout` in the middle of a frame is closed, so
//! clients stalled mid-frame cannot lock everyone out under `--max-connections`;
//! SIGTERM does not wait its grace for half-frames; `net.idle_timeout` closes idle
//! connections and leaves busy ones alone.

mod common;
mod support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::Server;
use docdb_protocol::Command as Cmd;
use support::*;

/// Three connections that each sent half a frame and then nothing (no close), each one
/// held by the server: the harness's start-up probe may still hold a connection slot
/// for a moment, so a connection the server turned away is retried.
fn half_frames(s: &Server) -> Vec<UnixStream> {
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the server kept refusing connections"
        );
        let mut st = raw(s);
        let f = frame(
            held.len() as u64 + 1,
            1,
            Cmd::Execute as u8,
            vec![read_op("", 1)],
        );
        st.write_all(&f[..f.len() / 2]).unwrap();
        match read_reply(&mut st, Instant::now() + Duration::from_millis(300)) {
            Reply::TimedOut => held.push(st),
            _ => std::thread::sleep(Duration::from_millis(50)), // refused: try again
        }
    }
    held
}

#[test]
fn connections_stalled_mid_frame_are_closed_after_frame_timeout() {
    // 3 s: long enough that a server starved of CPU by the rest of the suite still
    // holds the three stalled connections when the fourth client arrives.
    let s = Server::start_with_config(
        "[net]\nframe_timeout = \"3s\"\n",
        &["--max-connections", "3"],
    );
    let t = Instant::now();
    let stalled = half_frames(&s);
    std::thread::sleep(Duration::from_millis(200));
    // A fourth client is turned away while the three hold every slot...
    let mut c = client(&s);
    match read_reply(&mut c.stream, Instant::now() + Duration::from_secs(5)) {
        Reply::Frame(r) => assert_eq!(text(&r), "too many connections", "{r:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // ...and served once the frame timeout closed them (without the timeout: never).
    let served = wait_for(Duration::from_secs(15), || {
        let mut c = client(&s);
        c.stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // A refused connection may be closed before the request is written.
        try_write(&mut c.stream, &frame(1, 0, Cmd::Stats as u8, vec![]))
            && matches!(c.recv(), Some(r) if r.status == 0)
    });
    let after = t.elapsed();
    assert!(
        served,
        "no client was served in 15 s with 3 stalled connections"
    );
    assert!(
        after >= Duration::from_millis(2900) && after < Duration::from_secs(15),
        "served after {after:?} (frame_timeout 3 s)"
    );
    // The stalled ones were closed by the server.
    for mut st in stalled {
        let (_, closed) = read_until_closed(&mut st, Instant::now() + Duration::from_secs(2));
        assert!(closed, "a stalled connection was left open");
    }
}

#[test]
fn sigterm_does_not_wait_for_half_frames() {
    // The default frame timeout (10 s): shutdown must not wait for it either.
    let mut s = Server::start(&[]);
    let mut c = client(&s);
    let db = c.open_db("d");
    assert_eq!(c.create(db, "", 1, "{}").0, 0);
    let _stalled = half_frames(&s);
    std::thread::sleep(Duration::from_millis(200));
    signal(&s, libc::SIGTERM);
    let (status, took) = wait_exit(&mut s, Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
}

#[test]
fn idle_timeout_closes_idle_connections_only() {
    let s = Server::start_with_config("[net]\nidle_timeout = \"1s\"\n", &[]);
    let mut c = client(&s);
    let db = c.open_db("idle");
    // Busy: requests every 300 ms for 2 s keep it open.
    for i in 1..=7 {
        assert_eq!(c.create(db, "", i, "{}").0, 0);
        std::thread::sleep(Duration::from_millis(300));
    }
    // Idle: closed after about a second.
    let t = Instant::now();
    let (replies, closed) = read_until_closed(&mut c.stream, t + Duration::from_secs(5));
    assert!(replies.is_empty() && closed, "{replies:?} closed={closed}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );
}

#[test]
fn without_idle_timeout_idle_connections_stay() {
    let s = Server::start(&[]);
    let mut c = client(&s);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(stats(&mut c)[0], 0);
}
