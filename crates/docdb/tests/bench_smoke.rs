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

#[test]
fn the_query_scenario_runs_every_phase_on_every_target_and_validates_the_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (report, json) = run(
        "--scenario query --compare docdb,embedded,sqlite --preload 300 --duration 0.6 --threads 2 --write-threads 2",
        tmp.path(),
    );
    assert!(report.failure().is_none(), "{:?}", report.failure());
    let targets: Vec<TargetKind> = report.runs.iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        [TargetKind::Docdb, TargetKind::Embedded, TargetKind::Sqlite]
    );
    use docdb_bench::scenario::query as q;
    for r in &report.runs {
        let who = r.target.name();
        assert_eq!(r.validation_failures, 0, "{who}: {:?}", r.failure_examples);
        assert!(r.errors.is_empty(), "{who}: {:?}", r.errors);
        let names: Vec<&str> = r.phases.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                q::READ_BY_ID,
                q::FIND_EQ,
                q::FIND_RANGE,
                q::CREATE_NO_INDEX,
                q::CREATE_2_INDEXES
            ],
            "{who}"
        );
        for p in &r.phases {
            assert!(p.ops > 0, "{who}: {} did nothing", p.name);
            let l = p.latency.as_ref().unwrap();
            assert!(l.p50_us <= l.p99_us && l.p99_us <= l.max_us, "{who}: {l:?}");
        }
        // Equality on a unique field: one row each; a range of 100 values: 100 rows.
        let eq = r.phase(q::FIND_EQ).unwrap();
        assert_eq!(eq.rows, eq.ops, "{who}");
        let range = r.phase(q::FIND_RANGE).unwrap();
        assert_eq!(range.rows, range.ops * 100, "{who}");
        for f in [
            q::EQ_OVER_READ_P50,
            q::INDEXED_CREATES_SHARE,
            q::INDEX_BUILD_S,
            q::LOAD_DOCS_PER_S,
        ] {
            assert!(r.figures.get(f).is_some_and(|v| *v > 0.0), "{who}: {f}");
        }
        let j = json["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["target"] == who)
            .unwrap();
        assert_eq!(j["phases"].as_array().map(Vec::len), Some(5), "{who}");
        assert_eq!(j["phases"][1]["name"], q::FIND_EQ);
        assert_eq!(j["phases"][1]["ops"].as_u64(), Some(eq.ops));
    }
    // The server ran on its defaults.
    assert_eq!(
        report.runs[0].settings["server_non_default"],
        "log_level = \"warn\""
    );
    // Each of DocDB's targets next to SQLite, phase by phase, and issue 14's goals
    // with SQLite's figure of the same run.
    assert_eq!(report.phase_comparisons.len(), 10);
    assert!(report.comparisons.is_empty(), "{:?}", report.comparisons);
    let goals: Vec<(TargetKind, &str)> = report.goals.iter().map(|g| (g.target, g.unit)).collect();
    assert_eq!(
        goals,
        [
            (TargetKind::Docdb, "x"),
            (TargetKind::Docdb, "ms"),
            (TargetKind::Docdb, "share"),
            (TargetKind::Embedded, "queries/s"),
            (TargetKind::Embedded, "share"),
        ]
    );
    assert!(report.goals.iter().all(|g| g.sqlite.is_some()));
    assert_eq!(json["goals"].as_array().map(Vec::len), Some(5));
    assert_eq!(json["phase_comparisons"].as_array().map(Vec::len), Some(10));
    let md = report.to_markdown();
    assert!(md.contains("### issue 14 speed targets"), "{md}");
    assert!(md.contains("| find_range | docdb |"), "{md}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["report.json"], "{left:?}");
}
