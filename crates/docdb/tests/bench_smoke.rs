//! `docdb-bench` against the real server (started by the bench from this build's
//! binary), the embedded engine and SQLite in one run: every target does operations,
//! every result is validated (reads return the last written content, final counts
//! match), the reports have their structure, and the server the bench started stops
//! cleanly. No timing is asserted.
#![allow(clippy::unwrap_used)]

use clap::Parser as _;
use docdb_bench::report::RunResult;
use docdb_bench::{Cli, TargetKind};

fn run(args: &str, dir: &std::path::Path) -> (docdb_bench::Report, serde_json::Value) {
    let json = dir.join("report.json");
    let mut argv: Vec<String> = ["docdb-bench", "--quiet", "--seed", "11", "--server-bin"]
        .map(String::from)
        .into();
    argv.push(env!("CARGO_BIN_EXE_docdb").into());
    argv.extend(args.split_whitespace().map(String::from));
    argv.extend(["--dir".into(), dir.display().to_string()]);
    argv.extend(["--json".into(), json.display().to_string()]);
    let cli = Cli::try_parse_from(&argv).unwrap();
    let report = docdb_bench::run(&cli).unwrap();
    let value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (report, value)
}

#[test]
fn five_seconds_of_the_mix_on_every_target_with_ratios_to_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let (report, json) = run(
        "--compare docdb,embedded,sqlite --dbs 2 --workers-per-db 3 --preload 200 --duration 5",
        tmp.path(),
    );
    assert!(report.failure().is_none(), "{:?}", report.failure());
    let targets: Vec<TargetKind> = report.runs.iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        [TargetKind::Docdb, TargetKind::Embedded, TargetKind::Sqlite]
    );
    for r in &report.runs {
        assert_eq!(r.validation_failures, 0, "{:?}", r.failure_examples);
        assert!(r.errors.is_empty(), "{:?}: {:?}", r.target, r.errors);
        for op in ["read", "create", "update", "delete"] {
            let s = &r.per_op[op];
            assert!(s.ops > 0, "{:?} did no {op}", r.target);
            let l = s.latency.as_ref().unwrap();
            assert!(l.p50_us <= l.p99_us && l.p99_us <= l.p999_us && l.p999_us <= l.max_us);
        }
        assert_consistent(r, &json, true);
        assert_eq!(r.per_db.len(), 2);
        assert!(
            r.notes
                .iter()
                .any(|n| n.starts_with("final check read back all")),
            "{:?}",
            r.notes
        );
    }
    let server = &report.runs[0];
    assert!(
        server.server_rss_mib.is_some_and(|m| m > 0.0),
        "the started server's memory is reported"
    );
    for d in &server.per_db {
        let e = d
            .engine
            .as_ref()
            .expect("the server's figures per database");
        assert!(e.group_commit.total_batches > 0, "{e:?}");
        assert!(e.wal_growth_bytes > 0, "{e:?}");
    }
    let ratios: Vec<TargetKind> = report.comparisons.iter().map(|c| c.target).collect();
    assert_eq!(ratios, [TargetKind::Docdb, TargetKind::Embedded]);
    assert!(json["comparisons"][0]["throughput_ratio"].as_f64().unwrap() > 0.0);
    assert_eq!(json["runs"][0]["target"], "docdb");
    // Only the report is left: the run's data and the server's socket are gone.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["report.json"], "{left:?}");
}

#[test]
fn a_hot_database_over_the_socket_reports_every_databases_p99() {
    let tmp = tempfile::tempdir().unwrap();
    let (report, json) = run(
        "--target docdb --dbs 3 --workers-per-db 4 --hot-db-share 0.75 --policy deepest --preload 100 --duration 2",
        tmp.path(),
    );
    assert!(report.failure().is_none(), "{:?}", report.failure());
    let r = &report.runs[0];
    assert_eq!(r.settings["policy"], "deepest");
    let workers: Vec<usize> = r.per_db.iter().map(|d| d.workers).collect();
    assert_eq!(workers, [9, 2, 1]);
    assert_consistent(r, &json, true);
    // Database 0 runs 9 of the 12 workers: it does most of the operations.
    assert!(
        r.per_db[0].ops > r.per_db[1].ops + r.per_db[2].ops,
        "{:?}",
        r.per_db
    );
    assert!(r
        .per_db
        .iter()
        .all(|d| d.latency.as_ref().is_some_and(|l| l.p99_us > 0.0)));
}

#[test]
fn a_server_that_cannot_start_is_reported_with_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let argv = [
        "docdb-bench",
        "--quiet",
        "--server-bin",
        env!("CARGO_BIN_EXE_docdb"),
        "--server-workers",
        "100000",
        "--duration",
        "1",
        "--dir",
        tmp.path().to_str().unwrap(),
    ];
    let e = docdb_bench::run(&Cli::try_parse_from(argv).unwrap()).unwrap_err();
    assert!(
        Cli::try_parse_from(["docdb-bench", "--policy", "sideways"]).is_err(),
        "an unknown policy is refused before anything starts"
    );
    let text = format!("{e:#}");
    assert!(text.contains("exited at start"), "{text}");
    assert!(
        text.contains("sched.workers"),
        "the server's own message: {text}"
    );
}

/// What the report could get wrong: the per-operation and per-database rows add up to
/// the total, every throughput is its count over the run's time, the JSON file says
/// the same as the report, and (for `mix`, default 40,30,20,10) each operation's share
/// of the total matches the mix within five standard deviations.
fn assert_consistent(r: &RunResult, json: &serde_json::Value, mix: bool) {
    let who = format!("{:?}/{:?}", r.scenario, r.target);
    let per_op: u64 = r.per_op.values().map(|s| s.ops).sum();
    assert_eq!(per_op, r.ops, "{who}: per-op rows {:?}", r.per_op);
    let per_db: u64 = r.per_db.iter().map(|d| d.ops).sum();
    assert_eq!(per_db, r.ops, "{who}: per-db rows");
    let close = |got: f64, ops: u64, what: &str| {
        let want = ops as f64 / r.elapsed_secs;
        assert!(
            (got - want).abs() <= want * 0.02 + 1e-9,
            "{who}: {what} ops/s {got}, {ops} ops in {} s",
            r.elapsed_secs
        );
    };
    close(r.ops_per_sec, r.ops, "total");
    for (op, s) in &r.per_op {
        close(s.ops_per_sec, s.ops, op);
        assert_eq!(s.latency.is_some(), s.ops > 0, "{who}: {op}");
    }
    for d in &r.per_db {
        close(d.ops_per_sec, d.ops, "a database's");
    }
    let j = json["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|j| j["target"] == serde_json::to_value(r.target).expect("target"))
        .expect("the run is in the JSON report");
    assert_eq!(j["ops"].as_u64(), Some(r.ops), "{who}");
    // JSON text round-trips a float to within its last digit, not always exactly.
    let elapsed = j["elapsed_secs"].as_f64().expect("elapsed_secs");
    assert!(
        (elapsed - r.elapsed_secs).abs() <= r.elapsed_secs * 1e-12,
        "{who}: JSON elapsed {elapsed} s, report {} s",
        r.elapsed_secs
    );
    for (op, s) in &r.per_op {
        assert_eq!(j["per_op"][op]["ops"].as_u64(), Some(s.ops), "{who}: {op}");
    }
    assert_eq!(
        j["per_db"].as_array().map(Vec::len),
        Some(r.per_db.len()),
        "{who}"
    );
    if mix {
        let n = r.ops as f64;
        assert!(r.ops >= 200, "{who}: too few operations to check the mix");
        for (op, pct) in [
            ("read", 0.4),
            ("create", 0.3),
            ("update", 0.2),
            ("delete", 0.1),
        ] {
            let share = r.per_op[op].ops as f64 / n;
            let tol = 5.0 * (pct * (1.0 - pct) / n).sqrt() + 0.01;
            assert!(
                (share - pct).abs() <= tol,
                "{who}: {op} is {share:.3} of {n} ops, the mix says {pct}"
            );
        }
    }
}
