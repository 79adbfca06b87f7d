//! Running a query: where its candidate documents come from ([`Source`]) and the
//! execution over one snapshot.
//!
//! Execution, in two phases, both at one registered snapshot (so no version it reads
//! is pruned meanwhile and every row is of the same moment):
//! 1. Select: walk the candidates (a scan, an index's ranges the [`super::planner`]
//!    chose, or a union's ids), parse each document, keep those matching the filter
//!    and sorting strictly after the `after` cursor. A scan in id order (no sort)
//!    stops at the `limit + 1`-th match; otherwise the best `limit + 1` `(key, id)`
//!    pairs are kept in a bounded max-heap, so memory stays `O(limit)` whatever the
//!    collection's size; no document is kept. An index read in sort order stops once
//!    the heap is full and a key sorts after its worst row. A union first reads every
//!    branch's index entries at the snapshot and keeps their ids, sorted and
//!    deduplicated (8 bytes per entry: the one part of a page not `O(limit)`, bounded
//!    by the index entries it reads), then walks them as a scan walks the
//!    collection: in id order, from the cursor's id, stopping at the `limit + 1`-th
//!    match without a sort, through the heap with one. An exact index plan with no
//!    sort, or a sort the index order gives ([`exact_run`]), reads no document here:
//!    each entry is a match and its key holds its sort key.
//! 2. Page: read the chosen rows again (the cache usually has them), project them, and
//!    stop before the row that would take the page past the byte budget (never before
//!    the first). `next` is the cursor of the last row when rows follow.
//!
//! A page may be given a budget of work ([`Work`]: index entries examined plus
//! documents read); past it, the run gives up and returns nothing, and the caller runs
//! it again without one (the server answers light queries in place that way).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::{json, Value};

use super::cursor::{self, Cursor};
use super::path::Path;
use super::planner::{self, Choice, IndexPlan};
use super::projection::Projection;
use super::sort::{self, SortField, SortKey};
use super::Query;
use crate::db::{Inner, SCAN_ROW_OVERHEAD};
use crate::error::{Error, Result};
use crate::index::Collection;
use crate::partial::Fields;
use crate::secondary::build::scan_at;
use crate::secondary::{Direction, IndexHit};

/// Where a query's candidate documents come from: a full scan, ranges of one
/// secondary index, or a union of index plans, as the planner ([`super::planner`])
/// chose.
pub(crate) enum Source {
    /// Every live document of the collection, in id order.
    Scan,
    /// The entries of an index's ranges (a superset of the matches).
    Index(Box<IndexPlan>),
    /// The entries of several unordered index plans (one per branch of an `$or`):
    /// their ids are collected, sorted and deduplicated first, then the documents
    /// are read once each in id order, like a scan's.
    Union(Vec<IndexPlan>),
}

impl Source {
    /// The source for a query on a collection at snapshot `snap` (an index built
    /// after it cannot be read there: scan).
    pub(crate) fn choose(coll: &Collection, q: &Query, snap: u64) -> Source {
        match planner::choose(coll, &q.filter, &q.sort, snap) {
            Some(Choice::Index(p)) => Source::Index(Box::new(p)),
            Some(Choice::Union(ps)) => Source::Union(ps),
            None => Source::Scan,
        }
    }
}

/// How much work a page may still do, in index entries examined plus documents read
/// (`None`: unbounded). Once spent, the run stops and returns no page.
struct Work {
    left: Option<u64>,
    over: bool,
}

impl Work {
    /// Takes one unit; false (and remembered) when none is left.
    fn spend(&mut self) -> bool {
        match &mut self.left {
            Some(0) => {
                self.over = true;
                false
            }
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }
}

/// The candidate ids of a union: every entry of each plan's ranges at `snap`
/// (counting them per plan in `keys`), sorted and deduplicated; `None` once `work`
/// is spent.
fn union_ids(
    plans: &[IndexPlan],
    snap: u64,
    keys: &mut [u64],
    work: &mut Work,
) -> Result<Option<Vec<u64>>> {
    let mut ids = Vec::new();
    for (plan, keys) in plans.iter().zip(keys.iter_mut()) {
        for range in plan.unordered.iter().chain(&plan.ranges) {
            for hit in scan_at(plan.index.clone(), range.clone(), plan.direction, snap)? {
                if !work.spend() {
                    return Ok(None);
                }
                *keys += 1;
                ids.push(hit.id);
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(Some(ids))
}

/// Calls `f` with each candidate id greater than `after_id` (all when `None`), in id
/// order, until `f` breaks: the ids of `union` (sorted, distinct), or without one
/// every document live at `snap`. A scan holds the collection's lock only while a
/// chunk of ids is collected, never while `f` runs.
fn walk(
    coll: &Collection,
    snap: u64,
    union: Option<&[u64]>,
    after_id: Option<u64>,
    mut f: impl FnMut(u64) -> Result<ControlFlow<()>>,
) -> Result<()> {
    if let Some(ids) = union {
        let from = after_id.map_or(0, |a| ids.partition_point(|&id| id <= a));
        for &id in &ids[from..] {
            if f(id)?.is_break() {
                break;
            }
        }
        return Ok(());
    }
    const CHUNK: usize = 512;
    let mut from = match after_id {
        None => Some(0),
        Some(id) => id.checked_add(1),
    };
    let mut chunk: Vec<u64> = Vec::with_capacity(CHUNK);
    while let Some(start) = from {
        chunk.clear();
        {
            let docs = coll.docs.read();
            for (&id, c) in docs.range(start..) {
                if c.at(snap).is_some_and(|v| v.is_live()) {
                    chunk.push(id);
                    if chunk.len() == CHUNK {
                        break;
                    }
                }
            }
        }
        from = match chunk.last() {
            Some(&id) if chunk.len() == CHUNK => id.checked_add(1),
            _ => None,
        };
        for &id in &chunk {
            if f(id)?.is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// What `explain` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `"scan"`, `"index"` or `"union"`.
    pub kind: &'static str,
    pub collection: String,
    /// Documents read and tested against the filter (each once).
    pub examined: u64,
    /// With an index source: which one and what was read of it.
    pub index: Option<IndexUse>,
    /// With a union source: each `$or` branch's index and what was read of it, in
    /// the branches' order (empty otherwise).
    pub branches: Vec<IndexUse>,
}

/// The index part of a [`Plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct IndexUse {
    pub name: String,
    /// `"forward"` or `"backward"`.
    pub direction: &'static str,
    /// The ranges read, in order (see `IndexPlan::bounds_json`).
    pub bounds: Value,
    /// Index entries read (each a candidate unless it sorts before the cursor).
    pub keys_examined: u64,
    /// Whether the index order is the sort order (the read stops at `limit + 1`).
    pub ordered: bool,
    /// Whether the plan decided the filter by itself (see [`exact_run`]): its hits
    /// were taken as matches, none parsed nor tested (so `examined` is 0).
    pub exact: bool,
}

impl Plan {
    pub fn to_json(&self) -> Value {
        let mut v =
            json!({"kind": self.kind, "collection": self.collection, "examined": self.examined});
        if let Some(i) = &self.index {
            v["index"] = json!(i.name);
            v["direction"] = json!(i.direction);
            v["bounds"] = i.bounds.clone();
            v["keys_examined"] = json!(i.keys_examined);
            v["ordered"] = json!(i.ordered);
            v["exact"] = json!(i.exact);
        }
        if self.kind == "union" {
            v["keys_examined"] = json!(self.branches.iter().map(|b| b.keys_examined).sum::<u64>());
            v["branches"] = self
                .branches
                .iter()
                .map(|b| json!({"index": b.name, "bounds": b.bounds, "keys_examined": b.keys_examined}))
                .collect();
        }
        v
    }
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage {
    /// `(id, document)` in the query's order; each document is JSON text (projected
    /// when the query has a projection).
    pub rows: Vec<(u64, Vec<u8>)>,
    /// The cursor to pass as `after` for the next page; `None` at the end.
    pub next: Option<String>,
    /// The plan, when the query asked for `explain`.
    pub plan: Option<Plan>,
}

/// A heap entry ordered by the query's sort (the greatest is the worst kept row).
struct Entry {
    key: SortKey,
    id: u64,
    sort: Arc<[SortField]>,
    /// The document's bytes, kept for the page while the kept bytes stay within the
    /// budget (`None`: read again in phase 2).
    bytes: Option<Vec<u8>>,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        sort::compare(&self.sort, (&self.key, self.id), (&other.key, other.id))
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}

/// The best `limit + 1` rows offered, under the query's sort then id, after the
/// cursor: a bounded max-heap (its top is the worst row kept).
struct Best {
    heap: BinaryHeap<Entry>,
    limit: usize,
    sort: Arc<[SortField]>,
    /// The rows' bytes kept with them, and how many more may be (the page's budget).
    kept: Kept,
}

impl Best {
    fn new(limit: usize, sort: Arc<[SortField]>, budget: usize) -> Best {
        Best {
            heap: BinaryHeap::with_capacity(limit + 2),
            limit,
            sort,
            kept: Kept::new(budget),
        }
    }

    fn full(&self) -> bool {
        self.heap.len() > self.limit
    }

    fn worst(&self) -> Option<&Entry> {
        self.heap.peek()
    }

    /// Keeps document `id` (parsed as far as the filter and sort read it: `doc`; its
    /// text: `bytes`) if it matches the filter, sorts after the cursor and is among
    /// the best `limit + 1`.
    fn offer(&mut self, q: &Query, after: Option<&Cursor>, id: u64, doc: &Value, bytes: Vec<u8>) {
        if !q.filter.matches(doc) {
            return;
        }
        let key = sort::key_of(&q.sort, doc);
        self.offer_key(q, after, id, key, Some(bytes));
    }

    /// Keeps row `id` of sort key `key` (a match) if it sorts after the cursor and is
    /// among the best `limit + 1`, with its text when given (`None`: read in phase 2).
    fn offer_key(
        &mut self,
        q: &Query,
        after: Option<&Cursor>,
        id: u64,
        key: SortKey,
        bytes: Option<Vec<u8>>,
    ) {
        if let Some(Cursor { key: ck, id: cid }) = after {
            if sort::compare(&q.sort, (&key, id), (ck, *cid)) != Ordering::Greater {
                return;
            }
        }
        let mut e = Entry {
            key,
            id,
            sort: self.sort.clone(),
            bytes: None,
        };
        if self.heap.len() <= self.limit {
            e.bytes = bytes.and_then(|b| self.kept.take(b));
            self.heap.push(e);
        } else if self.heap.peek().is_some_and(|worst| e < *worst) {
            if let Some(old) = self.heap.pop() {
                self.kept.release(old.bytes.as_ref());
            }
            e.bytes = bytes.and_then(|b| self.kept.take(b));
            self.heap.push(e);
        }
    }

    fn into_rows(self) -> Vec<Chosen> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|e| (e.key, e.id, e.bytes))
            .collect()
    }
}

/// A row phase 1 chose: its sort key, id and (when kept) its bytes.
type Chosen = (SortKey, u64, Option<Vec<u8>>);

/// How many bytes of documents phase 1 keeps for the page: at most its budget, so a
/// query's memory stays bounded by what its reply may hold whatever the documents'
/// sizes; rows past it are read again when the page is built.
struct Kept {
    left: usize,
}

impl Kept {
    fn new(budget: usize) -> Kept {
        Kept { left: budget }
    }

    fn take(&mut self, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let len = bytes.len().saturating_add(SCAN_ROW_OVERHEAD);
        (len <= self.left).then(|| {
            self.left -= len;
            bytes
        })
    }

    fn release(&mut self, bytes: Option<&Vec<u8>>) {
        if let Some(b) = bytes {
            self.left = self
                .left
                .saturating_add(b.len().saturating_add(SCAN_ROW_OVERHEAD));
        }
    }
}

/// Runs one page of `q` on `coll` at snapshot `snap` (which the caller holds open for
/// the call), its reply rows costing at most `max_bytes` (each row its document's
/// length plus [`SCAN_ROW_OVERHEAD`]; the first row always). With a `budget`, gives
/// up (`Ok(None)`) once it has examined that many index entries and documents
/// together; without one, always returns a page.
pub(crate) fn run(
    inner: &Inner,
    coll: &Arc<Collection>,
    q: &Query,
    max_bytes: usize,
    snap: u64,
    budget: Option<u64>,
) -> Result<Option<QueryPage>> {
    let mut work = Work {
        left: budget,
        over: false,
    };
    let max_depth = inner.config.limits.max_depth;
    if q.depth > max_depth {
        return Err(Error::InvalidQuery(format!(
            "query nests deeper than {max_depth} levels (limits.max_depth)"
        )));
    }
    let after = match &q.after {
        Some(text) => Some(cursor::decode(text, &q.sort, max_depth).map_err(Error::InvalidQuery)?),
        None => None,
    };
    let limit = q.limit.clamp(1, super::MAX_LIMIT);
    let source = Source::choose(coll, q, snap);
    let sort_fields: Arc<[SortField]> = q.sort.clone().into();
    let needed = read_fields(q);
    let mut examined = 0u64;
    let mut keys_examined = 0u64;
    // A union's candidates: every branch's entries first (one count per branch).
    let mut branch_keys = vec![
        0u64;
        if let Source::Union(ps) = &source {
            ps.len()
        } else {
            0
        }
    ];
    let union = match &source {
        Source::Union(plans) => match union_ids(plans, snap, &mut branch_keys, &mut work)? {
            Some(ids) => Some(ids),
            None => return Ok(None),
        },
        _ => None,
    };

    // Phase 1: the best `limit + 1` rows after the cursor, in order.
    let chosen: Vec<Chosen> = match &source {
        Source::Scan | Source::Union(_) if q.sort.is_empty() => {
            let mut out = Vec::with_capacity(limit + 1);
            let mut kept = Kept::new(max_bytes);
            let after_id = after.as_ref().map(|c| c.id);
            walk(coll, snap, union.as_deref(), after_id, |id| {
                if !work.spend() {
                    return Ok(ControlFlow::Break(()));
                }
                let (bytes, doc) = read_value(inner, coll, id, snap, &needed)?;
                examined += 1;
                if q.filter.matches(&doc) {
                    out.push((Vec::new(), id, kept.take(bytes)));
                }
                Ok(if out.len() > limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            })?;
            out
        }
        Source::Scan | Source::Union(_) => {
            let mut best = Best::new(limit, sort_fields.clone(), max_bytes);
            walk(coll, snap, union.as_deref(), None, |id| {
                if !work.spend() {
                    return Ok(ControlFlow::Break(()));
                }
                let (bytes, doc) = read_value(inner, coll, id, snap, &needed)?;
                examined += 1;
                best.offer(q, after.as_ref(), id, &doc, bytes);
                Ok(ControlFlow::Continue(()))
            })?;
            best.into_rows()
        }
        Source::Index(plan) => {
            let exact = exact_run(plan, q);
            let mut best = Best::new(limit, sort_fields.clone(), max_bytes);
            let m = q.sort.len();
            let ranges = match &after {
                Some(c) if plan.ordered => plan.after(&c.key),
                _ => plan.ranges.clone(),
            };
            let skip = plan.prefix.len();
            // The sort key of a hit: its `m` key parts after the prefix (meaningful
            // when the plan is ordered; empty without a sort).
            let key_of_hit = |hit: &IndexHit| -> SortKey {
                hit.key
                    .iter()
                    .skip(skip)
                    .take(m)
                    .map(|p| p.value().cloned())
                    .collect()
            };
            let reads = (plan.unordered.iter().cloned().map(|r| (r, false)))
                .chain(ranges.into_iter().map(|r| (r, plan.ordered)));
            'ranges: for (range, ordered) in reads {
                let scan = scan_at(plan.index.clone(), range, plan.direction, snap)?;
                for hit in scan {
                    if !work.spend() {
                        break 'ranges;
                    }
                    keys_examined += 1;
                    if q.sort.is_empty() && after.as_ref().is_some_and(|c| hit.id <= c.id) {
                        continue; // in id order, a row at or before the cursor
                    }
                    if ordered {
                        // The hit's `m` parts after the prefix are its sort key, and
                        // keys only grow (in sort order) from here up to the first
                        // missing value (`Missing` and `ViaArray` parts both have none,
                        // and the parts after them are in order within each kind
                        // only): once a full heap's worst row sorts before that
                        // leading part, nothing further can enter.
                        let key = key_of_hit(&hit);
                        let lead = key.iter().position(Option::is_none).map_or(m, |i| i + 1);
                        if best.full()
                            && best.worst().is_some_and(|w| {
                                sort::compare(&q.sort[..lead], (&key, 0), (&w.key, 0))
                                    == Ordering::Greater
                            })
                        {
                            break 'ranges;
                        }
                        if let Some(c) = &after {
                            if sort::compare(&q.sort, (&key, hit.id), (&c.key, c.id))
                                != Ordering::Greater
                            {
                                continue;
                            }
                        }
                    }
                    if exact {
                        // The hit matches (the plan is exact), and its sort key is in
                        // the index entry: nothing of the document is read here; the
                        // page reads the rows it returns (phase 2).
                        best.offer_key(q, after.as_ref(), hit.id, key_of_hit(&hit), None);
                        continue;
                    }
                    if !work.spend() {
                        break 'ranges;
                    }
                    let (bytes, doc) = read_value(inner, coll, hit.id, snap, &needed)?;
                    examined += 1;
                    best.offer(q, after.as_ref(), hit.id, &doc, bytes);
                }
            }
            best.into_rows()
        }
    };

    // Phase 2 reads at most the chosen rows not kept: a page that cannot afford them
    // gives up before reading any (for an exact plan, the work so far is the index
    // entries only).
    let to_read = chosen.iter().take(limit).filter(|r| r.2.is_none()).count() as u64;
    if work.over || work.left.is_some_and(|left| left < to_read) {
        return Ok(None);
    }

    // Phase 2: the page, within the byte budget.
    let projection = q.projection.as_deref().map(|paths| {
        let fields = Fields::new(paths.iter().map(Path::segments));
        (Projection::new(paths), fields)
    });
    let mut rows: Vec<(u64, Vec<u8>)> = Vec::with_capacity(chosen.len().min(limit));
    let mut bytes = 0usize;
    let mut more = chosen.len() > limit;
    let mut last: Option<(&SortKey, u64)> = None;
    let mut chosen = chosen;
    for row in chosen.iter_mut().take(limit) {
        let id = row.1;
        let kept = row.2.take();
        let doc = match &projection {
            None => match kept {
                Some(b) => b,
                None => read_bytes(inner, coll, id, snap)?,
            },
            Some((p, fields)) => {
                let text = match kept {
                    Some(b) => b,
                    None => read_bytes(inner, coll, id, snap)?,
                };
                let v = parse_value(&text, inner, coll, id, fields)?;
                serde_json::to_vec(&p.apply(&v)).map_err(|e| Error::Corrupt {
                    detail: format!("{}/{id}: projection not serialisable: {e}", coll.name),
                })?
            }
        };
        let cost = doc.len().saturating_add(SCAN_ROW_OVERHEAD);
        if !rows.is_empty() && bytes.saturating_add(cost) > max_bytes {
            more = true;
            break;
        }
        bytes = bytes.saturating_add(cost);
        rows.push((id, doc));
        last = Some((&row.0, id));
    }
    let next = match last {
        Some((key, id)) if more => Some(cursor::encode(&q.sort, key, id)),
        _ => None,
    };
    let plan = q.explain.then(|| Plan {
        kind: match source {
            Source::Scan => "scan",
            Source::Index(_) => "index",
            Source::Union(_) => "union",
        },
        collection: coll.name.to_string(),
        examined,
        index: match &source {
            Source::Scan | Source::Union(_) => None,
            Source::Index(p) => Some(IndexUse {
                name: p.index.def.name.clone(),
                direction: match p.direction {
                    Direction::Forward => "forward",
                    Direction::Backward => "backward",
                },
                bounds: p.bounds_json(),
                keys_examined,
                ordered: p.ordered,
                exact: exact_run(p, q),
            }),
        },
        branches: match &source {
            Source::Union(plans) => plans
                .iter()
                .zip(&branch_keys)
                .map(|(p, &keys_examined)| IndexUse {
                    name: p.index.def.name.clone(),
                    direction: "forward",
                    bounds: p.bounds_json(),
                    keys_examined,
                    ordered: false,
                    exact: false,
                })
                .collect(),
            _ => Vec::new(),
        },
    });
    Ok(Some(QueryPage { rows, next, plan }))
}

/// Whether an index plan's hits are taken as they are: the plan is exact for the
/// whole filter (its hits are the matches, [`IndexPlan::exact`]) and the sort needs
/// no field of the document (none, or the plan is ordered: the sort paths are index
/// fields, and with no array or via-array entry a key part is `Missing` exactly
/// when [`Path::get`] finds no value and otherwise holds that value, so the hit's
/// key parts are its sort key).
fn exact_run(plan: &IndexPlan, q: &Query) -> bool {
    plan.exact && (q.sort.is_empty() || plan.ordered)
}

/// A document's bytes at the snapshot.
fn read_bytes(inner: &Inner, coll: &Arc<Collection>, id: u64, snap: u64) -> Result<Vec<u8>> {
    // INVARIANT: the snapshot is registered, so the version live at `snap` that the
    // candidate walk saw is still there (NotFound here would be a bug, not a race).
    Ok(inner.read_doc(coll, id, Some(snap))?.1)
}

/// What phase 1 parses of each candidate: the paths the filter and the sort read.
fn read_fields(q: &Query) -> Fields {
    let mut paths = Vec::new();
    q.filter.paths(&mut paths);
    paths.extend(q.sort.iter().map(|f| f.path.clone()));
    Fields::new(paths.iter().map(Path::segments))
}

/// A document's bytes and the document parsed as far as `fields` reach
/// ([`Fields::parse`]).
fn read_value(
    inner: &Inner,
    coll: &Arc<Collection>,
    id: u64,
    snap: u64,
    fields: &Fields,
) -> Result<(Vec<u8>, Value)> {
    let bytes = read_bytes(inner, coll, id, snap)?;
    let v = parse_value(&bytes, inner, coll, id, fields)?;
    Ok((bytes, v))
}

/// A stored document parsed as far as `fields` reach, refusing one nested deeper
/// than `limits.max_depth` (stored under an older, larger limit) rather than
/// recursing without bound.
fn parse_value(
    bytes: &[u8],
    inner: &Inner,
    coll: &Collection,
    id: u64,
    fields: &Fields,
) -> Result<Value> {
    crate::json::check_depth(bytes, inner.config.limits.max_depth)?;
    fields.parse(bytes, false).map_err(|_| Error::Corrupt {
        detail: format!("{}/{id}: stored document is not valid JSON", coll.name),
    })
}
