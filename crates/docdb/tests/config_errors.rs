#![allow(clippy::unwrap_used)]
//! Bad configuration fails at start (SPEC §9): a bad flag value or a bad key/value in
//! the `--config` TOML file makes `docdb serve` exit non-zero at once, with a message
//! on stderr naming the key; no socket is left behind.

mod common;
mod support;

use std::time::Duration;

use support::*;

/// Runs `docdb serve` on a fresh dir with `args` (+ `--config` with `toml` if given)
/// and checks it fails naming one of `needles`.
fn expect_failure(args: &[&str], toml: Option<&str>, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sock = dir.path().join("s.sock");
    let cfg = dir.path().join("docdb.toml");
    let mut all: Vec<String> = vec![
        "--data-dir".into(),
        data.display().to_string(),
        "--socket".into(),
        sock.display().to_string(),
    ];
    if let Some(t) = toml {
        std::fs::write(&cfg, t).unwrap();
        all.extend(["--config".into(), cfg.display().to_string()]);
    }
    all.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = run_serve_expect_exit(&refs, Duration::from_secs(10));
    let what = format!("args {args:?} toml {toml:?}");
    assert!(!out.status.success(), "{what}: started ({})", out.status);
    assert!(
        out.elapsed < Duration::from_secs(5),
        "{what}: took {:?}",
        out.elapsed
    );
    assert!(
        needles.iter().any(|n| out.stderr.contains(n)),
        "{what}: stderr does not name the key (any of {needles:?}):\n{}",
        out.stderr
    );
    assert!(!sock.exists(), "{what}: a socket was left behind");
}

#[test]
fn bad_flag_values_name_the_flag() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--queue-depth", "0"], &["queue_depth", "--queue-depth"]),
        (&["--queue-depth", "abc"], &["queue_depth", "--queue-depth"]),
        (&["--policy", "bogus"], &["policy"]),
        (&["--socket-mode", "999"], &["socket_mode", "--socket-mode"]),
        (
            &["--socket-mode", "rw-------"],
            &["socket_mode", "--socket-mode"],
        ),
        (
            &["--compact-ratio", "3.0"],
            &["tombstone_ratio", "--compact-ratio"],
        ),
        (
            &["--compact-ratio=-0.5"],
            &["tombstone_ratio", "--compact-ratio"],
        ),
        (
            &["--compact-size", "0"],
            &["compaction.size_mb", "--compact-size"],
        ),
        (
            &["--memory-global", "0"],
            &["memory.global_capacity_mb", "--memory-global"],
        ),
        (
            &["--memory-per-db", "0"],
            &["memory.per_db_limit_mb", "--memory-per-db"],
        ),
        (
            &["--memory-per-db", "lots"],
            &["per_db_limit_mb", "--memory-per-db"],
        ),
        (&["--http", "notanaddr"], &["http"]),
        (&["--log-level", "loud"], &["log_level", "--log-level"]),
        (&["--fsync-mode", "sometimes"], &["fsync"]),
        (&["--wal-fsync", "maybe"], &["wal-fsync", "fsync"]),
        (
            &["--wal-max-size", "0"],
            &["wal.max_file_size_mb", "--wal-max-size"],
        ),
        (&["--workers", "5000"], &["sched.workers", "--workers"]),
        (
            &["--max-connections=-1"],
            &["max-connections", "max_connections"],
        ),
        (&["--nonsense-flag", "1"], &["--nonsense-flag"]),
    ];
    for (args, needles) in cases {
        expect_failure(args, None, needles);
    }
}

#[test]
fn bad_config_file_keys_and_range_errors_name_the_key() {
    let cases: &[(&str, &[&str])] = &[
        // Unknown keys (typos must not be ignored).
        ("[sched]\nqueue_dept = 5\n", &["queue_dept"]),
        ("bogus_top = 1\n", &["bogus_top"]),
        ("[shed]\nqueue_depth = 5\n", &["shed"]),
        // Values out of range.
        ("[sched]\nqueue_depth = 0\n", &["sched.queue_depth"]),
        (
            "[memory]\nper_db_limit_mb = 0\n",
            &["memory.per_db_limit_mb"],
        ),
        (
            "[memory]\nglobal_capacity_mb = 0\n",
            &["memory.global_capacity_mb"],
        ),
        (
            "[compaction]\ntombstone_ratio = 3.0\n",
            &["compaction.tombstone_ratio"],
        ),
        ("[healing]\ninterval_secs = 0\n", &["healing.interval_secs"]),
        ("[net]\nauth_timeout = \"0s\"\n", &["net.auth_timeout"]),
        (
            "[memory]\ncache_mb = 4\n",
            &["memory.cache_mb", "memory.shared_cache_mb"],
        ),
        (
            "[sched]\nworker_expiry = \"0s\"\n",
            &["sched.worker_expiry"],
        ),
        ("[sched]\nmax_workers = 0\n", &["sched.max_workers"]),
        ("[sched]\nmax_batch = 0\n", &["sched.max_batch"]),
        ("[sched]\nspin = \"1s\"\n", &["sched.spin"]),
        ("[wal]\nmax_file_size_mb = 0\n", &["wal.max_file_size_mb"]),
        (
            "[checkpoint]\ninterval_mb = 0\n",
            &["checkpoint.interval_mb"],
        ),
        ("log_format = \"xml\"\n", &["log_format"]),
        ("http = \"nowhere\"\n", &["http"]),
    ];
    for (toml, needles) in cases {
        expect_failure(&[], Some(toml), needles);
    }
    // A config file that does not exist or does not parse.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let out = run_serve_expect_exit(
        &[
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
            "--socket",
            dir.path().join("s").to_str().unwrap(),
            "--config",
            missing.to_str().unwrap(),
        ],
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("missing.toml"), "{}", out.stderr);
    expect_failure(&[], Some("[sched\n"), &["docdb.toml"]);
}

/// A value of the wrong type or an unknown enum variant names its key too.
#[test]
fn bad_config_file_values_name_the_key() {
    let cases: &[(&str, &[&str])] = &[
        ("[sched]\npolicy = \"fastest\"\n", &["policy"]),
        ("[db]\nidle_timeout = \"soon\"\n", &["idle_timeout"]),
        (
            "[memory]\nper_db_limit_mb = \"lots\"\n",
            &["per_db_limit_mb"],
        ),
        ("socket_mode = \"999\"\n", &["socket_mode"]),
        (
            "[wal.fsync]\nmode = \"sometimes\"\n",
            &["fsync.mode", "mode ="],
        ),
        ("[sched]\nqueue_depth = -5\n", &["queue_depth"]),
        ("max_connections = \"many\"\n", &["max_connections"]),
    ];
    let mut failures = Vec::new();
    for (toml, needles) in cases {
        if let Err(e) = std::panic::catch_unwind(|| expect_failure(&[], Some(toml), needles)) {
            failures.push(format!(
                "{toml:?}: {}",
                e.downcast_ref::<String>().cloned().unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_good_config_file_is_used_and_flags_override_it() {
    let mut s = unstarted(&[]);
    let cfg = in_dir(&s, "docdb.toml");
    std::fs::write(
        &cfg,
        "[sched]\npolicy = \"deepest\"\nqueue_depth = 7\nmax_workers = 9\n[wal.fsync]\nmode = \"always\"\n",
    )
    .unwrap();
    s.extra_args = vec!["--config".into(), cfg.display().to_string()];
    s.spawn();
    let mut c = s.connect();
    let v = scheduler_stats(&mut c);
    assert_eq!(v["policy"], "deepest");
    assert_eq!(v["worker_pool"]["pool_capacity"], 9);
    drop(c);
    s.kill();
    s.extra_args
        .extend(["--policy".into(), "round_robin".into()]);
    s.spawn();
    assert_eq!(scheduler_stats(&mut s.connect())["policy"], "round_robin");
}
