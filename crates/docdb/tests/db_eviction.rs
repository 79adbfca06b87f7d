#![allow(clippy::unwrap_used)]
//! `db.max_open_dbs` and `db.idle_timeout` (SPEC §7): least-recently-used idle
//! databases are closed beyond the limit, idle ones after the timeout, and every one
//! reopens transparently on its next request with all its data.

mod common;
mod support;

use std::time::Duration;

use common::Server;
use docdb_protocol::Command as Cmd;
use support::*;

fn with_config(toml: &str) -> Server {
    let mut s = unstarted(&[]);
    let cfg = in_dir(&s, "docdb.toml");
    std::fs::write(&cfg, toml).unwrap();
    s.extra_args = vec!["--config".into(), cfg.display().to_string()];
    s.spawn();
    s
}

#[test]
fn least_recently_used_databases_close_and_reopen_transparently() {
    let s = with_config("[db]\nmax_open_dbs = 2\n");
    let mut c = s.connect();
    let dbs: Vec<u64> = (0..6).map(|i| c.open_db(&format!("lru-{i}"))).collect();
    for round in 0..4u64 {
        for (i, &db) in dbs.iter().enumerate() {
            let id = round * 10 + i as u64;
            assert_eq!(
                c.create(db, "", id, &format!(r#"{{"db":{i},"r":{round}}}"#))
                    .0,
                0
            );
            let active = stats(&mut c)[1];
            assert!(active <= 3, "{active} databases open with max_open_dbs = 2");
        }
    }
    for (i, &db) in dbs.iter().enumerate() {
        for round in 0..4u64 {
            let id = round * 10 + i as u64;
            assert_eq!(
                c.read(db, "", id),
                (0, format!(r#"{{"db":{i},"r":{round}}}"#).into_bytes())
            );
        }
    }
    let v = json_call(&mut c, 0, Cmd::ListDbs, vec![]);
    for row in v.as_array().unwrap() {
        assert_eq!(
            row["DocsLive"], 4,
            "closed databases keep their figures: {row}"
        );
    }
}

#[test]
fn idle_databases_close_after_the_timeout() {
    let s = with_config("[db]\nidle_timeout = \"1s\"\n");
    let mut c = s.connect();
    let db = c.open_db("idle");
    assert_eq!(c.create(db, "", 1, "{}").0, 0);
    assert_eq!(stats(&mut c)[1], 1);
    assert!(
        wait_for(Duration::from_secs(5), || stats(&mut c)[1] == 0),
        "still open after the idle timeout"
    );
    assert_eq!(c.read(db, "", 1), (0, b"{}".to_vec()));
    assert_eq!(stats(&mut c)[1], 1);
}
