//! Every scenario runs briefly, end to end, through the library with the flags a user
//! would type, against the in-process targets (the embedded engine and SQLite; the
//! server target's smoke test is `crates/docdb/tests/bench_smoke.rs`, where the
//! server binary is at hand): the reports have their structure, operations happened,
//! and nothing failed validation. No timing is asserted.

mod report_checks;
use report_checks::assert_consistent;

use docdb_bench::{Cli, Report, Scenario, TargetKind};

use clap::Parser as _;

/// Runs `docdb-bench <args>` quietly in a temporary directory, with both report
/// files, and returns the report, the JSON file's content and the Markdown file's.
fn engine(args: &str) -> (Report, serde_json::Value, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let json = tmp.path().join("report.json");
    let md = tmp.path().join("report.md");
    let mut argv = vec!["docdb-bench", "--quiet", "--seed", "7"];
    argv.extend(args.split_whitespace());
    let (dir, json_s, md_s) = (
        tmp.path().to_str().expect("utf-8 path").to_owned(),
        json.to_str().expect("utf-8 path").to_owned(),
        md.to_str().expect("utf-8 path").to_owned(),
    );
    argv.extend_from_slice(&["--dir", &dir, "--json", &json_s, "--markdown", &md_s]);
    let cli = Cli::try_parse_from(&argv).expect("flags parse");
    let report = docdb_bench::run(&cli).expect("run succeeds");
    let value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON report written"))
            .expect("JSON report parses");
    let markdown = std::fs::read_to_string(&md).expect("Markdown report written");
    // Only the reports are left behind: the data directory is removed.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left.len(), 2, "data directory not removed: {left:?}");
    (report, value, markdown)
}

fn assert_common(report: &Report, json: &serde_json::Value, markdown: &str) {
    assert!(report.failure().is_none(), "{:?}", report.failure());
    for key in ["command_line", "date", "nproc"] {
        assert!(!json["meta"][key].is_null(), "meta.{key} missing: {json}");
    }
    assert!(markdown.contains("## docdb-bench: "), "{markdown}");
    for run in &report.runs {
        assert!(
            run.ops > 0,
            "{:?}/{:?}: no operations",
            run.scenario,
            run.target
        );
        assert_eq!(run.validation_failures, 0, "{:?}", run.failure_examples);
        assert!(run.elapsed_secs > 0.0);
        assert_consistent(run, json, run.scenario == Scenario::Mix);
    }
}

#[test]
fn creates_on_both_targets_with_a_ratio() {
    let (report, json, md) =
        engine("--scenario creates --compare embedded,sqlite --threads 8 --duration 1");
    assert_common(&report, &json, &md);
    assert_eq!(report.runs.len(), 2);
    let embedded = &report.runs[0];
    assert_eq!(embedded.target, TargetKind::Embedded);
    let l = embedded.per_op["create"]
        .latency
        .as_ref()
        .expect("latencies");
    assert!(l.p50_us <= l.p99_us && l.p99_us <= l.p999_us && l.p999_us <= l.max_us);
    let gc = &embedded.per_db[0]
        .engine
        .as_ref()
        .expect("engine stats")
        .group_commit;
    assert!(gc.total_batches > 0 && gc.avg_batch_size >= 1.0, "{gc:?}");
    assert!(
        report.runs[1].per_db[0].engine.is_none(),
        "SQLite has no group commit"
    );
    assert_eq!(report.comparisons.len(), 1);
    assert_eq!(report.comparisons[0].target, TargetKind::Embedded);
    assert!(report.comparisons[0].throughput_ratio > 0.0);
    assert!(json["comparisons"][0]["throughput_ratio"].is_number());
    assert!(md.contains("vs sqlite"));
}

#[test]
fn reads_of_preloaded_documents() {
    let (report, json, md) =
        engine("--scenario reads --target embedded,sqlite --preload 2000 --duration 1");
    assert_common(&report, &json, &md);
    assert_eq!(report.runs.len(), 2);
    for run in &report.runs {
        assert_eq!(run.scenario, Scenario::Reads);
        assert_eq!(run.per_op.keys().copied().collect::<Vec<_>>(), ["read"]);
        assert!(run.errors.is_empty(), "{:?}", run.errors);
    }
}

#[test]
fn mix_validates_every_result_on_both_targets() {
    let (report, json, md) =
        engine("--scenario mix --compare embedded,sqlite --dbs 2 --workers-per-db 3 --preload 300 --duration 1");
    assert_common(&report, &json, &md);
    for run in &report.runs {
        for op in ["read", "create", "update", "delete"] {
            assert!(
                run.per_op.get(op).is_some_and(|s| s.ops > 0),
                "{op}: {:?}",
                run.per_op
            );
        }
        assert_eq!(run.per_db.len(), 2);
        assert!(run.per_db.iter().all(|d| d.ops > 0));
        assert!(run.errors.is_empty(), "{:?}", run.errors);
    }
    assert_eq!(json["runs"][0]["per_db"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_hot_database_gets_its_share_of_the_workers() {
    let (report, json, md) = engine(
        "--target embedded --dbs 3 --workers-per-db 4 --hot-db-share 0.75 --preload 200 --duration 1",
    );
    assert_common(&report, &json, &md);
    let run = &report.runs[0];
    assert_eq!(run.scenario, Scenario::Mix, "mix is the default scenario");
    let workers: Vec<usize> = run.per_db.iter().map(|d| d.workers).collect();
    assert_eq!(workers, [9, 2, 1]);
    assert!(
        run.per_db.iter().all(|d| d.latency.is_some()),
        "p99 per database"
    );
    assert_eq!(run.settings["workers_by_db"], "9/2/1");
    assert!(md.contains("| 0 | 9 |"), "{md}");
}

#[test]
fn replay_reopens_what_was_written() {
    let (report, json, md) = engine("--scenario replay --wal-mb 8");
    assert_eq!(
        report.runs[0].target,
        TargetKind::Embedded,
        "replay's default target"
    );
    assert_common(&report, &json, &md);
    let rp = report.runs[0].replay.as_ref().expect("replay figures");
    assert!(rp.wal_bytes_written >= 8 << 20, "{rp:?}");
    assert!(
        rp.replayed_bytes >= 8 << 20,
        "the whole WAL is replayed: {rp:?}"
    );
    assert_eq!(rp.live_docs_after, rp.docs_written);
    assert!(rp.open_secs > 0.0 && rp.replay_mib_per_sec > 0.0);
    assert!(json["runs"][0]["replay"]["replayed_bytes"].is_u64());
}

#[test]
fn replay_refuses_sqlite_and_bad_flags_are_rejected() {
    let parse = |args: &str| {
        Cli::try_parse_from(["docdb-bench"].into_iter().chain(args.split_whitespace()))
    };
    let cli = parse("--scenario replay --compare embedded,sqlite --quiet").expect("flags parse");
    let e = docdb_bench::run(&cli).expect_err("replay has no SQLite counterpart");
    assert!(format!("{e:#}").contains("embedded"), "{e:#}");
    assert!(parse("--scenario mix --mix 50,50,50,0").is_err());
    assert!(parse("--scenario creates --fsync-mode sometimes").is_err());
    // The subcommand earlier reports name still works.
    let old = Cli::try_parse_from(["docdb-bench", "engine", "--scenario", "mix", "--dbs", "5"])
        .expect("the engine subcommand parses");
    assert_eq!(old.bench_args().dbs, 5);
    let bad = parse("--hot-db-share 1.5 --target embedded --quiet").expect("flags parse");
    let e = docdb_bench::run(&bad).expect_err("a share above 1 is refused");
    assert!(format!("{e:#}").contains("--hot-db-share"), "{e:#}");
}
