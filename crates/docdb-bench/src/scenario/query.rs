//! `query` (issue 14, "Speed"): finding documents by their fields, side by side with
//! SQLite (one JSON text column, expression indexes on the same fields).
//!
//! One database, a collection `users` of `--preload` documents (default 1,000,000)
//! loaded in large transactions, and an empty collection `plain` beside it:
//! `{"email":"user<id>@example.com","status":<one of 5>,"n":<int>,"id":..,"v":0,"pad":".."}`
//! of about `--doc-size` bytes (default 256). `email` is unique; `n` is a permutation
//! of `1..=N` over the loaded ids (so a range of 100 values returns 100 documents
//! scattered over the id space); documents created later have `n` = their id (> N),
//! outside every range the scenario asks for.
//!
//! Steps, each timed phase with its own HDR histogram:
//! 1. the indexes on `users.email` and `users.n` are built (timed once:
//!    `index_build_s`);
//! 2. `read_by_id` and `find_eq` (equality on `email`), `--threads` readers,
//!    alternating in two rounds of half the duration each so the VM's drift falls on
//!    both alike;
//! 3. `find_range`: `n` in `[lo, lo + 100)`, 100 rows;
//! 4. `create_no_index` (into `plain`) and `create_2_indexes` (into `users`, with its
//!    1 M documents and 2 indexes), `--write-threads` writers, alternating the same
//!    way.
//!
//! Validation: an equality query must return exactly the one document with that
//! email; a range query exactly the ids whose `n` is in the range, in id order (the
//! ids are computed from the inverse permutation); every 16th result's documents are
//! compared with what was written; at the end the collection holds the loaded
//! documents plus every acknowledged create.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::cli::{Scenario, TargetKind};
use crate::report::RunResult;
use crate::runner::{run_timed, Recorder, Timed, Worker};
use crate::target::{QuerySession, Row, PLAIN_COLLECTION, QUERY_COLLECTION};
use crate::workload::{mix64, DocGen, Op, Rng};

use super::Ctx;

/// Phase names (the report's rows and the JSON's `phases[].name`).
pub const CREATE_NO_INDEX: &str = "create_no_index";
pub const READ_BY_ID: &str = "read_by_id";
pub const FIND_EQ: &str = "find_eq";
pub const FIND_RANGE: &str = "find_range";
pub const CREATE_2_INDEXES: &str = "create_2_indexes";

/// Derived figures (the JSON's `figures`).
pub const LOAD_DOCS_PER_S: &str = "load_docs_per_s";
pub const INDEX_BUILD_S: &str = "index_build_s";
pub const MEMORY_MIB_LOADED: &str = "memory_used_mib_after_load";
pub const MEMORY_MIB_INDEXED: &str = "memory_used_mib_after_indexes";
pub const EQ_OVER_READ_P50: &str = "find_eq_p50_over_read_by_id_p50";
pub const EQ_OVER_READ_P99: &str = "find_eq_p99_over_read_by_id_p99";
pub const INDEXED_CREATES_SHARE: &str = "create_2_indexes_over_create_no_index";

/// The equality field (unique) and the range field.
pub const EQ_FIELD: &str = "email";
pub const RANGE_FIELD: &str = "n";
/// Rows a range query returns (when the collection has that many).
pub const RANGE_ROWS: u64 = 100;
/// Default documents loaded.
pub const DEFAULT_DOCS: u64 = 1_000_000;
/// One in this many query results has its documents compared in full.
const FULL_CHECK_EVERY: u64 = 16;
/// Rounds `read_by_id` and `find_eq` alternate in.
const ROUNDS: u32 = 2;
/// Ids each round of creates has to itself (far more than a round writes).
const CREATES_ROUND_IDS: u64 = 1 << 40;
/// Bytes of a document besides `DocGen`'s body (the email, status and `n` fields).
const FIELDS_BYTES: usize = 70;

const STATUSES: [&str; 5] = ["active", "idle", "new", "banned", "gone"];

/// The documents of a run: a pure function of `(seed, id)`, and the permutation `n`.
pub struct QueryDocs {
    n_docs: u64,
    mult: u64,
    inv: u64,
    gen: DocGen,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `a⁻¹ mod m` for `gcd(a, m) == 1`, `m ≥ 1`.
fn inverse(a: u64, m: u64) -> u64 {
    let (mut t, mut new_t, mut r, mut new_r) = (0i128, 1i128, i128::from(m), i128::from(a % m));
    while new_r != 0 {
        let q = r / new_r;
        (t, new_t) = (new_t, t - q * new_t);
        (r, new_r) = (new_r, r - q * new_r);
    }
    t.rem_euclid(i128::from(m)) as u64
}

impl QueryDocs {
    pub fn new(seed: u64, n_docs: u64, doc_size: usize) -> Self {
        let n_docs = n_docs.max(1);
        // A multiplier coprime with N makes `n` a permutation of 1..=N (N = 1: 0).
        let mult = [1_000_003u64, 999_983, 7919, 1]
            .into_iter()
            .map(|m| m % n_docs)
            .find(|&m| m != 0 && gcd(m, n_docs) == 1)
            .unwrap_or(0);
        let inv = if mult == 0 { 0 } else { inverse(mult, n_docs) };
        QueryDocs {
            n_docs,
            mult,
            inv,
            gen: DocGen::new(seed, doc_size.saturating_sub(FIELDS_BYTES).max(1)),
        }
    }

    pub fn email(id: u64) -> String {
        format!("user{id}@example.com")
    }

    /// The range field of document `id`.
    pub fn n(&self, id: u64) -> u64 {
        if (1..=self.n_docs).contains(&id) {
            ((u128::from(id - 1) * u128::from(self.mult)) % u128::from(self.n_docs)) as u64 + 1
        } else {
            id
        }
    }

    /// The loaded document whose `n` is `n` (`1..=N`).
    pub fn id_of_n(&self, n: u64) -> u64 {
        ((u128::from(n - 1) * u128::from(self.inv)) % u128::from(self.n_docs)) as u64 + 1
    }

    pub fn body(&self, id: u64) -> Vec<u8> {
        let rest = self.gen.body(id, 0);
        let status = STATUSES[(mix64(id) % STATUSES.len() as u64) as usize];
        let mut out = format!(
            r#"{{"email":"{}","status":"{status}","n":{},"#,
            Self::email(id),
            self.n(id)
        )
        .into_bytes();
        out.extend_from_slice(rest.get(1..).unwrap_or_default());
        out
    }

    /// The ids a range query on `[lo, hi)` must return, ascending.
    pub fn ids_in_range(&self, lo: u64, hi: u64) -> Vec<u64> {
        let mut ids: Vec<u64> = (lo..hi).map(|n| self.id_of_n(n)).collect();
        ids.sort_unstable();
        ids
    }

    /// A range `[lo, hi)` of `n` holding `RANGE_ROWS` loaded documents (all of them
    /// when there are fewer).
    pub fn range(&self, rng: &mut Rng) -> (u64, u64) {
        if self.n_docs <= RANGE_ROWS {
            return (1, self.n_docs + 1);
        }
        let lo = rng.below(self.n_docs - RANGE_ROWS + 1) + 1;
        (lo, lo + RANGE_ROWS)
    }
}

/// Checks rows against the ids that must come back, and (when `full`) each
/// document against what was written.
fn check_rows(
    rec: &mut Recorder,
    docs: &QueryDocs,
    what: &str,
    rows: &[Row],
    want: &[u64],
    full: bool,
) {
    let got: Vec<u64> = rows.iter().map(|r| r.id).collect();
    if got != want {
        rec.validation_failure(|| {
            format!(
                "{what}: {} rows {:?}…, want {} rows {:?}…",
                got.len(),
                &got[..got.len().min(5)],
                want.len(),
                &want[..want.len().min(5)]
            )
        });
        return;
    }
    if full {
        for r in rows {
            let want: Option<serde_json::Value> = serde_json::from_slice(&docs.body(r.id)).ok();
            if r.value() != want {
                rec.validation_failure(|| {
                    format!("{what}: document {} differs from what was written", r.id)
                });
                return;
            }
        }
    }
}

/// Runs one phase: one worker per session, each running `body(worker, session, rec)`.
fn phase<F>(
    ctx: &Ctx<'_>,
    label: &str,
    duration: Duration,
    sessions: &mut [Box<dyn QuerySession>],
    body: &F,
) -> anyhow::Result<Timed>
where
    F: Fn(u64, &mut dyn QuerySession, &mut Recorder) -> anyhow::Result<()> + Sync,
{
    let workers: Vec<Worker<'_>> = sessions
        .iter_mut()
        .enumerate()
        .map(|(t, s)| Worker {
            db: 0,
            run: Box::new(move |rec: &mut Recorder| body(t as u64, &mut **s, rec)),
        })
        .collect();
    run_timed(label, Some(duration), &ctx.progress, workers)
}

pub fn run(ctx: &Ctx<'_>, kind: TargetKind) -> anyhow::Result<RunResult> {
    let a = ctx.args;
    let readers = ctx.args.threads_or(2).max(1);
    let writers = a.write_threads.max(1);
    let n_docs = ctx.args.preload_or(DEFAULT_DOCS);
    anyhow::ensure!(
        n_docs > 0,
        "query needs documents to find: --preload must be > 0"
    );
    let duration = ctx.duration()?;
    let seed = a.common.seed;
    let docs = QueryDocs::new(seed, n_docs, a.doc_size());
    let dir = ctx.run_dir(Scenario::Query, kind)?;
    let backend = ctx.backend(kind, &dir.path)?;
    let target = backend.open_query(&dir.path)?;
    let mut result = ctx.base_result(Scenario::Query, kind);
    result
        .set("docs", n_docs)
        .set("readers", readers)
        .set("writers", writers)
        .set("eq_field", EQ_FIELD)
        .set("range_field", RANGE_FIELD)
        .set("range_rows", RANGE_ROWS.min(n_docs))
        .set("dbs", 1);
    let label = format!("query/{}", kind.name());

    // Load (untimed phase, its rate noted).
    let bar = ctx
        .progress
        .counting(&format!("{label} load"), n_docs, "docs");
    let t0 = Instant::now();
    let mut it = (1..=n_docs).map(|id| (id, docs.body(id)));
    let loaded = target
        .load(&mut it, &|done| bar.set_position(done))
        .map_err(|e| {
            if format!("{e:#}").contains("memory limit") {
                e.context(format!(
                    "loading {n_docs} documents: documents and indexes count towards the \
                     database's memory limit (a server on its defaults holds fewer than \
                     1 M of these); raise it with --memory-per-db-mb"
                ))
            } else {
                e
            }
        })?;
    let load_secs = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    anyhow::ensure!(
        loaded == n_docs,
        "{label}: loaded {loaded} of {n_docs} documents"
    );
    result
        .figures
        .insert(LOAD_DOCS_PER_S, n_docs as f64 / load_secs.max(1e-9));
    const MIB: f64 = 1024.0 * 1024.0;
    if let Some(m) = target.memory_used() {
        result.figures.insert(MEMORY_MIB_LOADED, m as f64 / MIB);
    }

    let mut readers_s: Vec<Box<dyn QuerySession>> = (0..readers)
        .map(|_| target.session())
        .collect::<anyhow::Result<_>>()?;
    let mut writers_s: Vec<Box<dyn QuerySession>> = (0..writers)
        .map(|_| target.session())
        .collect::<anyhow::Result<_>>()?;

    let t0 = Instant::now();
    let bar = ctx
        .progress
        .spinner(&format!("{label}: building 2 indexes"));
    target
        .create_indexes(&[EQ_FIELD, RANGE_FIELD])
        .context("creating the indexes")?;
    bar.finish_and_clear();
    result
        .figures
        .insert(INDEX_BUILD_S, t0.elapsed().as_secs_f64());
    if let Some(m) = target.memory_used() {
        result.figures.insert(MEMORY_MIB_INDEXED, m as f64 / MIB);
    }
    let mut plan_rng = Rng::for_worker(seed, 999);
    let (lo, hi) = docs.range(&mut plan_rng);
    let probe = QueryDocs::email(n_docs / 2 + 1);
    result
        .notes
        .extend(target.explain((EQ_FIELD, &probe), (RANGE_FIELD, lo as i64, hi as i64)));

    // By-id reads and equality queries, alternating.
    let rows_eq = AtomicU64::new(0);
    let read = |round: u32| {
        let docs = &docs;
        move |t: u64, s: &mut dyn QuerySession, rec: &mut Recorder| {
            let mut rng = Rng::for_worker(seed, 1000 + u64::from(round) * 100 + t);
            let mut k = 0u64;
            while rec.running() {
                let id = rng.below(n_docs) + 1;
                let got = rec.time(Op::Read, || s.read(id));
                k += 1;
                match got {
                    Ok(b) if k.is_multiple_of(FULL_CHECK_EVERY) && b != docs.body(id) => {
                        rec.validation_failure(|| format!("read of {id}: not what was written"))
                    }
                    Ok(_) => {}
                    Err(e) => rec.validation_failure(|| format!("read of {id}: {e}")),
                }
            }
            Ok(())
        }
    };
    let eq = |round: u32| {
        let (docs, rows_eq) = (&docs, &rows_eq);
        move |t: u64, s: &mut dyn QuerySession, rec: &mut Recorder| {
            let mut rng = Rng::for_worker(seed, 2000 + u64::from(round) * 100 + t);
            let mut k = 0u64;
            while rec.running() {
                let id = rng.below(n_docs) + 1;
                let email = QueryDocs::email(id);
                let got = rec.time(Op::Read, || s.find_eq(EQ_FIELD, &email));
                k += 1;
                match got {
                    Ok(rows) => {
                        rows_eq.fetch_add(rows.len() as u64, Ordering::Relaxed);
                        let what = format!("{EQ_FIELD} = {email}");
                        check_rows(
                            rec,
                            docs,
                            &what,
                            &rows,
                            &[id],
                            k.is_multiple_of(FULL_CHECK_EVERY),
                        );
                    }
                    Err(e) => rec.validation_failure(|| format!("{EQ_FIELD} = {email}: {e}")),
                }
            }
            Ok(())
        }
    };
    let half = duration / ROUNDS;
    let (mut reads, mut eqs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        reads.push(phase(
            ctx,
            &format!("{label} {READ_BY_ID} {}/{ROUNDS}", round + 1),
            half,
            &mut readers_s,
            &read(round),
        )?);
        eqs.push(phase(
            ctx,
            &format!("{label} {FIND_EQ} {}/{ROUNDS}", round + 1),
            half,
            &mut readers_s,
            &eq(round),
        )?);
    }
    result.absorb_phase(READ_BY_ID, readers, &reads, 0)?;
    result.absorb_phase(FIND_EQ, readers, &eqs, rows_eq.load(Ordering::Relaxed))?;

    let rows_range = AtomicU64::new(0);
    let range = {
        let (docs, rows_range) = (&docs, &rows_range);
        move |t: u64, s: &mut dyn QuerySession, rec: &mut Recorder| {
            let mut rng = Rng::for_worker(seed, 3000 + t);
            let mut k = 0u64;
            while rec.running() {
                let (lo, hi) = docs.range(&mut rng);
                let got = rec.time(Op::Read, || s.find_range(RANGE_FIELD, lo as i64, hi as i64));
                k += 1;
                let what = format!("{lo} <= {RANGE_FIELD} < {hi}");
                match got {
                    Ok(rows) => {
                        rows_range.fetch_add(rows.len() as u64, Ordering::Relaxed);
                        let want = docs.ids_in_range(lo, hi);
                        check_rows(
                            rec,
                            docs,
                            &what,
                            &rows,
                            &want,
                            k.is_multiple_of(FULL_CHECK_EVERY),
                        );
                    }
                    Err(e) => rec.validation_failure(|| format!("{what}: {e}")),
                }
            }
            Ok(())
        }
    };
    let ranged = phase(
        ctx,
        &format!("{label} {FIND_RANGE}"),
        duration,
        &mut readers_s,
        &range,
    )?;
    result.absorb_phase(
        FIND_RANGE,
        readers,
        &[ranged],
        rows_range.load(Ordering::Relaxed),
    )?;

    // Creates into the collection without indexes and into the one with 2,
    // alternating. Worker t of a round creates base + t, base + t + writers, ...
    let creates = |indexed: bool, base: u64| {
        let docs = &docs;
        move |t: u64, s: &mut dyn QuerySession, rec: &mut Recorder| {
            let mut id = base + t;
            while rec.running() {
                let body = docs.body(id);
                let _ = rec.time(Op::Create, || s.create(indexed, id, &body));
                id += writers as u64;
            }
            Ok(())
        }
    };
    let (mut plain, mut indexed) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let base = n_docs + 1 + u64::from(round) * CREATES_ROUND_IDS;
        plain.push(phase(
            ctx,
            &format!("{label} {CREATE_NO_INDEX} {}/{ROUNDS}", round + 1),
            half,
            &mut writers_s,
            &creates(false, base),
        )?);
        indexed.push(phase(
            ctx,
            &format!("{label} {CREATE_2_INDEXES} {}/{ROUNDS}", round + 1),
            half,
            &mut writers_s,
            &creates(true, base),
        )?);
    }
    result.absorb_phase(CREATE_NO_INDEX, writers, &plain, 0)?;
    result.absorb_phase(CREATE_2_INDEXES, writers, &indexed, 0)?;

    drop(readers_s);
    drop(writers_s);
    let live = target.count()?;
    target.close()?;
    ctx.finish(backend, &mut result)?;

    // Every loaded document and every acknowledged create, nothing else.
    let created: u64 = [CREATE_NO_INDEX, CREATE_2_INDEXES]
        .iter()
        .filter_map(|p| result.phase(p).map(|p| p.ops))
        .sum();
    if live != n_docs + created {
        result.validation_failures += 1;
        result.failure_examples.push(format!(
            "{n_docs} loaded + {created} creates acknowledged, but the collection holds {live} documents"
        ));
    }
    let lat = |p: &str| result.phase(p).and_then(|p| p.latency.clone());
    if let (Some(r), Some(e)) = (lat(READ_BY_ID), lat(FIND_EQ)) {
        if r.p50_us > 0.0 && r.p99_us > 0.0 {
            result.figures.insert(EQ_OVER_READ_P50, e.p50_us / r.p50_us);
            result.figures.insert(EQ_OVER_READ_P99, e.p99_us / r.p99_us);
        }
    }
    let ops = |p: &str| result.phase(p).map(|p| p.ops_per_sec);
    if let (Some(plain), Some(indexed)) = (ops(CREATE_NO_INDEX), ops(CREATE_2_INDEXES)) {
        if plain > 0.0 {
            result
                .figures
                .insert(INDEXED_CREATES_SHARE, indexed / plain);
        }
    }
    result.notes.push(format!(
        "loaded {n_docs} documents in {load_secs:.2} s; {READ_BY_ID} and {FIND_EQ}, then {CREATE_NO_INDEX} (collection `{PLAIN_COLLECTION}`) and {CREATE_2_INDEXES} (collection `{QUERY_COLLECTION}`), alternated in {ROUNDS} rounds of {:.2} s each",
        half.as_secs_f64()
    ));
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_is_a_permutation_and_its_inverse_finds_the_ids() {
        for n_docs in [1u64, 2, 7, 100, 101, 1000, 7919 * 3, 1_000_003 * 2] {
            let d = QueryDocs::new(1, n_docs, 256);
            let sample: Vec<u64> = if n_docs <= 30_000 {
                (1..=n_docs).collect()
            } else {
                (1..=2000).chain(n_docs - 2000..=n_docs).collect()
            };
            for id in &sample {
                let n = d.n(*id);
                assert!((1..=n_docs).contains(&n), "{n_docs}: n({id}) = {n}");
                assert_eq!(d.id_of_n(n), *id, "{n_docs}");
            }
            if n_docs <= 30_000 {
                let mut all: Vec<u64> = sample.iter().map(|&id| d.n(id)).collect();
                all.sort_unstable();
                assert_eq!(all, (1..=n_docs).collect::<Vec<_>>(), "{n_docs}");
            }
            assert_eq!(d.n(n_docs + 5), n_docs + 5, "created documents are outside");
        }
    }

    #[test]
    fn documents_are_json_with_the_queried_fields() {
        let d = QueryDocs::new(3, 1000, 256);
        let b = d.body(17);
        assert!((220..=280).contains(&b.len()), "{}", b.len());
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
        assert_eq!(v["email"], "user17@example.com");
        assert_eq!(v["n"], d.n(17));
        assert_eq!(v["id"], 17);
        assert!(STATUSES.iter().any(|s| v["status"] == *s));
        let mut rng = Rng::new(5);
        for _ in 0..100 {
            let (lo, hi) = d.range(&mut rng);
            assert_eq!(hi - lo, RANGE_ROWS);
            assert!(lo >= 1 && hi <= 1001);
            let ids = d.ids_in_range(lo, hi);
            assert!(ids.iter().all(|&id| (lo..hi).contains(&d.n(id))));
        }
        assert_eq!(QueryDocs::new(3, 10, 256).range(&mut rng), (1, 11));
    }
}
