//! `docdb-bench` against the real server (started by the bench from this build's
//! binary), the embedded engine and SQLite in one run: every target does operations,
//! every result is validated (reads return the last written content, final counts
//! match), the reports have their structure, and the server the bench started stops
//! cleanly. No timing is asserted.
#![allow(clippy::unwrap_used)]

#[path = "../../docdb-bench/tests/report_checks/mod.rs"]
mod report_checks;
use report_checks::assert_consistent;

use clap::Parser as _;
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
    // The report names every setting the run changed from the server's defaults.
    assert_eq!(
        r.settings["server_non_default"],
        "log_level = \"warn\"; sched.policy = \"deepest\""
    );
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
