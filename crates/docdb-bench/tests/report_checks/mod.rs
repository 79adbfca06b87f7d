//! Checks that a docdb-bench report adds up, shared by this crate's smoke test and the
//! `docdb` crate's `bench_smoke.rs` (which includes this file by path).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use docdb_bench::report::RunResult;

/// What the report could get wrong: the per-operation and per-database rows add up to
/// the total, every throughput is its count over the run's time, the JSON file says
/// the same as the report, and (for `mix`, default 40,30,20,10) each operation's share
/// of the total matches the mix within five standard deviations.
pub fn assert_consistent(r: &RunResult, json: &serde_json::Value, mix: bool) {
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
