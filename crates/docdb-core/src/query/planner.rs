//! The planner: per query, a full scan, the ranges of one secondary index to read, or
//! a union of index plans for an `$or`.
//!
//! An index narrows; it decides only when the plan is exact (below): otherwise every
//! candidate it yields is read and the whole filter is evaluated on it again. So a
//! plan only has to read a *superset* of the matching documents; what makes that
//! hard is that an index key is not what a filter sees (see [`crate::secondary`]):
//! - a key part is the value at the path walking object members only. A filter path
//!   also fans out through arrays (`a.b` reaches `{"a":[{"b":1}]}`'s 1, `a.0` an
//!   element): such a document's key part is [`KeyPart::ViaArray`], and those
//!   entries of a constrained field are always read. A document with no value and
//!   no array on the way has a [`KeyPart::Missing`] part, which a filter sees as
//!   missing too: those entries are read only when every condition on the field
//!   holds on a missing field ([`Cond::matches_missing`]: `null`, `$in` with null,
//!   `$exists: false`, `$ne`, `$nin`, `$not`), so an equality or range on a sparse
//!   field reads its matches, not the documents without it.
//! - an array value is indexed as a whole, while conditions match any element. So
//!   the entries whose part is an array (one contiguous range in the type order) are
//!   read too, with the via-array entries — unless the index never held an entry
//!   with an array or via-array part since it was built or loaded (a flag that is
//!   never cleared, so it holds for every snapshot, unlike
//!   [`crate::IndexInfo::array_entries`], which counts the newest state): then an
//!   equality is one descent instead of three.
//!
//! Per index field, from the top-level conjunction's conditions on that path:
//! `$eq`/`$in` give points (non-array values, deduplicated); `$gt $gte $lt $lte` an
//! interval bounded to the operand's JSON type (a range on a number never reads
//! strings); anything else leaves the field free. Compound indexes use a prefix:
//! points on leading fields (their product bounded by [`MAX_RANGES`]), then at most one
//! interval. A field whose conditions exclude a missing field but give neither
//! (`$exists: true`, `$ne: null`) is read from the via-array entries on (everything
//! but `Missing`). `$ne $nin $not $exists $or $nor` give no bounds (they are
//! re-checked; an `$or` may give a union, below).
//!
//! Sort: when the query's sort paths are the index's leading paths with the same
//! directions (or all reversed, read backward) the index yields candidates in sort
//! order (ties by id are restored by the bounded heap) and the read stops once
//! `limit + 1` rows are kept and a key sorts after the worst of them. `Missing` and
//! `ViaArray` parts both have no sort value, and the parts after them are ordered
//! within each kind only: the stop compares the sort key up to its first missing
//! value, and a cursor's bound stops there too ([`IndexPlan::after`]). A sort path
//! with a numeric segment is never served (a sort value indexes arrays, a key does
//! not).
//!
//! Choice: the index with the most point fields, then an interval, then sort order
//! (the [`Score`], compared in that order).
//!
//! `$or`: a match of `A ∧ (B1 ∨ … ∨ Bn)` (`A` the rest of the top-level conjunction)
//! matches some `A ∧ Bi`, so the union of plans for each `A ∧ Bi` reads a superset of
//! the matches. A union ([`Choice::Union`]) is chosen when, for an `$or` of at most
//! [`MAX_UNION_BRANCHES`] branches in the top-level conjunction (the first such one),
//! every branch's best plan, planned without the sort (so unordered), scores above
//! the single plan of the whole filter (when there is one: the branches then read
//! something narrower than it); branches may use different indexes. A branch no index
//! serves makes the query take the single plan or a scan. Branches overlap, so the
//! executor reads the union's distinct ids once each ([`super::plan`]).
//!
//! None of those (or no index ready at the snapshot) is a scan.
//!
//! Exact: when the index never held an array or via-array entry (the flag above),
//! the filter is a conjunction of conditions on the plan's bounded fields only, each
//! field's conditions one `$eq`/`$in` of scalars or ranges on scalars of one type,
//! and a `null` (whose `Missing` entries are read as a whole prefix) only on the last
//! bounded field, the plan's entries are exactly the matches ([`exact`]): the
//! executor takes them without parsing or testing a document when the sort needs
//! none either ([`IndexPlan::exact`]; DECISIONS 71).

use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{json, Value};

use super::filter::{Cond, Filter};
use super::path::Path;
use super::sort::SortField;
use crate::index::Collection;
use crate::order;
use crate::secondary::key::{Fill, Key, KeyPart};
use crate::secondary::tree::SecondaryIndex;
use crate::secondary::{Direction, IndexRange};

/// Most ranges one plan reads (an `$in` on each of several compound fields
/// multiplies); fields past the budget are left free.
pub(crate) const MAX_RANGES: usize = 256;

/// Most branches of an `$or` served by a union of index plans (each reads up to
/// [`MAX_RANGES`] ranges); an `$or` with more is scanned.
pub(crate) const MAX_UNION_BRANCHES: usize = 16;

/// The index source of a query.
pub(crate) struct IndexPlan {
    pub index: Arc<SecondaryIndex>,
    /// Ranges read first, in no useful order: with a sort served after an equality
    /// prefix, the prefix fields' missing and array entries.
    pub unordered: Vec<IndexRange>,
    /// Disjoint ranges in the order they are read (the scan's direction), after
    /// `unordered`; all disjoint from each other and from those.
    pub ranges: Vec<IndexRange>,
    /// The key parts before the sort's when ordered (an equality prefix, one value per
    /// field): the sort key of a hit is `key[prefix.len()..][..sort.len()]`.
    pub prefix: Vec<KeyPart>,
    pub direction: Direction,
    /// The scan yields candidates in the query's sort order (`sort.len()` leading
    /// key parts are its sort key), so it may stop early.
    pub ordered: bool,
    /// The plan decides the whole filter: every entry its ranges hold at the
    /// snapshot is a match and every match has one (see [`exact`]). Only ever set
    /// on the single plan of a filter that is a conjunction of field conditions.
    pub exact: bool,
}

impl IndexPlan {
    /// The ranges narrowed to the keys at or after a cursor's sort key `key` in the
    /// read's direction (an ordered plan: `key` holds the values of the key parts
    /// after the prefix), so a later page does not walk the entries of the earlier
    /// ones again. Ranges wholly before the cursor are left out.
    pub(crate) fn after(&self, key: &[Option<Value>]) -> Vec<IndexRange> {
        let desc = self.index.desc;
        let forward = self.direction == Direction::Forward;
        // A missing sort value is a `Missing` or a `ViaArray` part, and past it the
        // parts are not in sort order across the two: the bound stops there, at
        // the kind read first.
        let mut at = self.prefix.clone();
        for (j, v) in key.iter().enumerate() {
            let Some(v) = v else {
                let ascending = desc & (1 << (self.prefix.len() + j)) == 0;
                at.push(if forward == ascending {
                    KeyPart::Missing
                } else {
                    KeyPart::ViaArray
                });
                break;
            };
            at.push(KeyPart::Value(v.clone()));
        }
        self.ranges
            .iter()
            .filter_map(|r| {
                let mut r = r.clone();
                if self.direction == Direction::Forward {
                    let lo = Bound::Included(at.clone());
                    if bound_key(&lo, desc, true) > bound_key(&r.lower, desc, true) {
                        r.lower = lo;
                    }
                } else {
                    let hi = Bound::Included(at.clone());
                    if bound_key(&hi, desc, false) < bound_key(&r.upper, desc, false) {
                        r.upper = hi;
                    }
                }
                let (lo, hi) = (
                    bound_key(&r.lower, desc, true),
                    bound_key(&r.upper, desc, false),
                );
                match (lo, hi) {
                    (BoundKey::Key(l), BoundKey::Key(h)) if l >= h => None,
                    _ => Some(r),
                }
            })
            .collect()
    }

    /// The bounds as `explain` shows them: `[lower, upper]` per range, each side
    /// `null` (unbounded) or `{"included"|"excluded": [part, ...]}`, a missing part
    /// as `{"$missing": true}`, in the index's key order.
    pub(crate) fn bounds_json(&self) -> Value {
        let part = |p: &KeyPart| match p {
            KeyPart::Value(v) => v.clone(),
            KeyPart::Missing => json!({"$missing": true}),
            KeyPart::ViaArray => json!({"$via_array": true}),
        };
        let side = |b: &Bound<Vec<KeyPart>>| match b {
            Bound::Unbounded => Value::Null,
            Bound::Included(ps) => json!({"included": ps.iter().map(part).collect::<Vec<_>>()}),
            Bound::Excluded(ps) => json!({"excluded": ps.iter().map(part).collect::<Vec<_>>()}),
        };
        Value::Array(
            self.unordered
                .iter()
                .chain(&self.ranges)
                .map(|r| json!([side(&r.lower), side(&r.upper)]))
                .collect(),
        )
    }
}

/// What one field's conditions let the index read (besides the via-array and array
/// entries, always read, and the missing ones unless the conditions exclude them).
#[derive(Debug, Clone, PartialEq)]
enum FieldBound {
    /// Values equal to one of these (ascending, distinct, no arrays).
    Points(Vec<Value>),
    /// Values within, all of one JSON type.
    Interval(Bound<Value>, Bound<Value>),
    /// Any value (a condition that fails on a missing field, such as `$exists: true`,
    /// and nothing narrower).
    Present,
    Free,
}

/// The `(path, conditions)` of the filter's top-level conjunction.
fn conjuncts<'a>(f: &'a Filter, out: &mut Vec<(&'a Path, &'a [Cond])>) {
    match f {
        Filter::And(fs) => fs.iter().for_each(|f| conjuncts(f, out)),
        Filter::Field(p, cs) => out.push((p, cs)),
        Filter::Or(_) | Filter::Nor(_) => {}
    }
}

/// The values of the type of `v` as an interval (`None` for arrays: the array range
/// is always read whole).
fn type_interval(v: &Value) -> Option<(Bound<Value>, Bound<Value>)> {
    use Bound::{Excluded, Included, Unbounded};
    Some(match v {
        Value::Null => (Included(Value::Null), Included(Value::Null)),
        Value::Number(_) => (Excluded(Value::Null), Excluded(json!(""))),
        Value::String(_) => (Included(json!("")), Excluded(json!({}))),
        Value::Object(_) => (Included(json!({})), Excluded(json!([]))),
        Value::Array(_) => return None,
        Value::Bool(_) => (Included(json!(false)), Unbounded),
    })
}

/// The tighter of two lower (`upper == false`) or upper bounds.
fn tighter(a: Bound<Value>, b: Bound<Value>, upper: bool) -> Bound<Value> {
    let val = |x: &Bound<Value>| match x {
        Bound::Included(v) | Bound::Excluded(v) => Some(v.clone()),
        Bound::Unbounded => None,
    };
    let (Some(x), Some(y)) = (val(&a), val(&b)) else {
        return if matches!(a, Bound::Unbounded) { b } else { a };
    };
    match order::cmp(&x, &y) {
        Ordering::Equal => {
            if matches!(a, Bound::Excluded(_)) {
                a
            } else {
                b
            }
        }
        o if (o == Ordering::Less) == upper => a,
        _ => b,
    }
}

fn interval_is_empty(lo: &Bound<Value>, hi: &Bound<Value>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => order::cmp(a, b) == Ordering::Greater,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            order::cmp(a, b) != Ordering::Less
        }
        _ => false,
    }
}

/// The bound the conjunction's conditions on `path` give, and whether a document
/// missing the field can match them (then the field's `Missing` entries are read).
fn field_bound(path: &str, conj: &[(&Path, &[Cond])]) -> (FieldBound, bool) {
    let missing = conj
        .iter()
        .filter(|(p, _)| p.as_str() == path)
        .flat_map(|(_, cs)| cs.iter())
        .all(Cond::matches_missing);
    (field_values(path, conj, missing), missing)
}

/// The values [`field_bound`] lets the index read.
fn field_values(path: &str, conj: &[(&Path, &[Cond])], missing: bool) -> FieldBound {
    let mut points: Option<Vec<Value>> = None;
    let mut interval: Option<(Bound<Value>, Bound<Value>)> = None;
    let mut ranged = false;
    let mut empty = false;
    let mut rank: Option<u8> = None;
    for c in conj
        .iter()
        .filter(|(p, _)| p.as_str() == path)
        .flat_map(|(_, cs)| cs.iter())
    {
        let (v, lower, incl) = match c {
            Cond::Eq(v) => {
                if points.as_ref().is_none_or(|p| p.len() > 1) {
                    points = Some(vec![v.clone()]);
                }
                continue;
            }
            Cond::In(vs) => {
                if points.as_ref().is_none_or(|p| p.len() > vs.len()) {
                    points = Some(vs.clone());
                }
                continue;
            }
            Cond::Gt(v) => (v, true, false),
            Cond::Gte(v) => (v, true, true),
            Cond::Lt(v) => (v, false, false),
            Cond::Lte(v) => (v, false, true),
            _ => continue,
        };
        ranged = true;
        let r = order::type_rank(v);
        if rank.is_some_and(|x| x != r) {
            empty = true;
        }
        rank = Some(r);
        let Some(ty) = type_interval(v) else {
            // A range on an array operand matches only arrays (always read).
            empty = true;
            continue;
        };
        let (lo, hi) = interval.take().unwrap_or(ty);
        let b = if incl {
            Bound::Included(v.clone())
        } else {
            Bound::Excluded(v.clone())
        };
        interval = Some(if lower {
            (tighter(lo, b, false), hi)
        } else {
            (lo, tighter(hi, b, true))
        });
    }
    if let Some(mut ps) = points {
        ps.retain(|v| !v.is_array());
        ps.sort_by(order::cmp);
        ps.dedup_by(|a, b| order::equal(a, b));
        return FieldBound::Points(ps);
    }
    if !ranged {
        return if missing {
            FieldBound::Free
        } else {
            FieldBound::Present
        };
    }
    match interval {
        Some((lo, hi)) if !empty && !interval_is_empty(&lo, &hi) => FieldBound::Interval(lo, hi),
        _ => FieldBound::Points(Vec::new()),
    }
}

/// A prefix bound as a position among the keys (as the index scan places it: an
/// included lower or excluded upper bound before the keys with its prefix, the
/// others after them); `Low`/`High`: unbounded below or above.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum BoundKey {
    Low,
    Key(Key),
    High,
}

fn bound_key(b: &Bound<Vec<KeyPart>>, desc: u32, lower: bool) -> BoundKey {
    let (parts, included) = match b {
        Bound::Unbounded if lower => return BoundKey::Low,
        Bound::Unbounded => return BoundKey::High,
        Bound::Included(p) => (p, true),
        Bound::Excluded(p) => (p, false),
    };
    BoundKey::Key(Key::new(
        parts.clone().into_boxed_slice(),
        desc,
        if lower == included {
            Fill::Low
        } else {
            Fill::High
        },
    ))
}

struct Expand<'a> {
    /// Per field: its bound and whether its missing entries are read.
    bounds: &'a [(FieldBound, bool)],
    desc: &'a [bool],
    /// Whether the index may hold array or via-array entries at the query's snapshot.
    arrays: bool,
    /// Each range with the field it bounds (its prefix is the fields before).
    out: Vec<(IndexRange, usize)>,
}

impl Expand<'_> {
    fn point(&mut self, prefix: Vec<KeyPart>, i: usize) {
        let r = if prefix.is_empty() {
            IndexRange::all()
        } else {
            IndexRange::prefix(prefix)
        };
        self.out.push((r, i));
    }

    /// The entries under `prefix` whose field `i` lies in `[lo, hi]` (key part order
    /// before the field's direction).
    fn interval(&mut self, prefix: &[KeyPart], i: usize, lo: Bound<KeyPart>, hi: Bound<KeyPart>) {
        let side = |b: Bound<KeyPart>| match b {
            Bound::Unbounded if prefix.is_empty() => Bound::Unbounded,
            Bound::Unbounded => Bound::Included(prefix.to_vec()),
            Bound::Included(v) => Bound::Included([prefix, &[v]].concat()),
            Bound::Excluded(v) => Bound::Excluded([prefix, &[v]].concat()),
        };
        let (l, u) = (side(lo), side(hi));
        let (lower, upper) = if self.desc[i] { (u, l) } else { (l, u) };
        self.out.push((
            IndexRange {
                lower,
                upper,
                after: None,
            },
            i,
        ));
    }

    fn field(&mut self, i: usize, prefix: Vec<KeyPart>) {
        let Some((b, missing)) = self.bounds.get(i) else {
            return self.point(prefix, i);
        };
        if *b == FieldBound::Free {
            return self.point(prefix, i);
        }
        let with = |p: KeyPart| [prefix.as_slice(), &[p]].concat();
        // The missing entries only when a missing field can match (see the module doc).
        if *missing {
            self.point(with(KeyPart::Missing), i);
        }
        if *b == FieldBound::Present {
            // Everything after the missing entries: via-array, then every value.
            return self.interval(
                &prefix,
                i,
                Bound::Included(KeyPart::ViaArray),
                Bound::Unbounded,
            );
        }
        // The via-array entries and the arrays, unless the index never held one
        // (see the module doc).
        if self.arrays {
            self.point(with(KeyPart::ViaArray), i);
            self.interval(
                &prefix,
                i,
                Bound::Included(KeyPart::Value(json!([]))),
                Bound::Excluded(KeyPart::Value(json!(false))),
            );
        }
        match b {
            FieldBound::Points(ps) => {
                for p in ps {
                    self.field(i + 1, with(KeyPart::Value(p.clone())));
                }
            }
            FieldBound::Interval(lo, hi) => self.interval(
                &prefix,
                i,
                lo.clone().map(KeyPart::Value),
                hi.clone().map(KeyPart::Value),
            ),
            FieldBound::Free | FieldBound::Present => {}
        }
    }
}

/// Whether a sort value (by [`Path::get`]) and a key part can differ for `path`: a
/// segment that may number an array element.
fn numeric_segment(path: &Path) -> bool {
    path.segments()
        .iter()
        .any(|s| s.bytes().all(|b| b.is_ascii_digit()))
}

/// How well an index serves a query: (point fields, an interval, sort order).
type Score = (usize, bool, bool);

/// [`plan_conj`] for a whole filter's top-level conjunction.
#[cfg(test)]
fn plan_index(
    index: &Arc<SecondaryIndex>,
    filter: &Filter,
    sort: &[SortField],
) -> Option<(Score, IndexPlan)> {
    let mut conj = Vec::new();
    conjuncts(filter, &mut conj);
    plan_conj(index, &conj, sort)
}

/// The plan of one index for the conjunction `conj` (a filter's top-level field
/// conditions) and `sort`, with its score; `None` when it helps with neither.
fn plan_conj(
    index: &Arc<SecondaryIndex>,
    conj: &[(&Path, &[Cond])],
    sort: &[SortField],
) -> Option<(Score, IndexPlan)> {
    let fields = &index.def.fields;
    let mut bounds: Vec<(FieldBound, bool)> = Vec::new();
    let mut ranges = 1usize;
    let mut points = 0usize;
    let mut has_interval = false;
    for (path, _) in fields {
        match field_bound(path, conj) {
            (FieldBound::Points(ps), missing) => {
                // Each point expands to the next field's ranges; +3: missing,
                // via-array, arrays.
                let next = ranges.saturating_mul(ps.len() + 3);
                if next > MAX_RANGES {
                    break;
                }
                ranges = next;
                points += 1;
                bounds.push((FieldBound::Points(ps), missing));
            }
            (iv @ (FieldBound::Interval(..) | FieldBound::Present), missing) => {
                has_interval = true;
                bounds.push((iv, missing));
                break;
            }
            (FieldBound::Free, _) => break,
        }
    }
    let desc: Vec<bool> = fields.iter().map(|(_, d)| *d < 0).collect();
    // The sort is served when its paths are the index's fields from `at` on, all in
    // their directions (forward) or all reversed (backward), after `at` leading fields
    // that each hold one value.
    let serves = |at: usize, reversed: bool| {
        !sort.is_empty()
            && at + sort.len() <= fields.len()
            && sort.iter().zip(&fields[at..]).all(|(s, (p, d))| {
                s.path.as_str() == p
                    && (s.descending != (*d < 0)) == reversed
                    && !numeric_segment(&s.path)
            })
    };
    let single = bounds
        .iter()
        .take_while(|(b, _)| matches!(b, FieldBound::Points(ps) if ps.len() == 1))
        .count();
    let order = (0..=single).find_map(|at| {
        if serves(at, false) {
            Some((at, Direction::Forward))
        } else if serves(at, true) {
            Some((at, Direction::Backward))
        } else {
            None
        }
    });
    let ordered = order.is_some();
    if points == 0 && !has_interval && !ordered {
        return None;
    }
    // Read after the query's snapshot was taken: an entry it can see was added
    // before, and set the flag (which is never cleared). So when it reads false here,
    // no entry visible at the snapshot has an array or via-array part, whatever is
    // written meanwhile: an array written before the snapshot set it already (and the
    // plan reads the array ranges and is not exact); one written after it is not
    // visible at the snapshot, neither in the index nor as a document version.
    let arrays = index.read().may_hold_arrays();
    let mut ex = Expand {
        bounds: &bounds,
        desc: &desc,
        arrays,
        out: Vec::new(),
    };
    ex.field(0, Vec::new());
    let at = order.map_or(0, |(at, _)| at);
    let by_lower = |a: &IndexRange, b: &IndexRange| {
        let (x, y) = (
            bound_key(&a.lower, index.desc, true),
            bound_key(&b.lower, index.desc, true),
        );
        x.cmp(&y)
    };
    let (mut ranges, mut unordered): (Vec<_>, Vec<_>) =
        ex.out.into_iter().partition(|(_, i)| *i >= at);
    let mut ranges: Vec<IndexRange> = ranges.drain(..).map(|(r, _)| r).collect();
    let mut unordered: Vec<IndexRange> = unordered.drain(..).map(|(r, _)| r).collect();
    ranges.sort_by(by_lower);
    unordered.sort_by(by_lower);
    let direction = order.map_or(Direction::Forward, |(_, d)| d);
    if direction == Direction::Backward {
        ranges.reverse();
    }
    let prefix: Vec<KeyPart> = bounds[..at]
        .iter()
        .filter_map(|(b, _)| match b {
            FieldBound::Points(ps) => ps.first().cloned().map(KeyPart::Value),
            _ => None,
        })
        .collect();
    Some((
        (points, has_interval, ordered),
        IndexPlan {
            index: index.clone(),
            unordered,
            ranges,
            prefix,
            direction,
            ordered,
            exact: !arrays && exact(fields, &bounds, conj),
        },
    ))
}

/// Whether ranges expanded from `bounds` (per leading field of an index with no
/// array or via-array entry) hold exactly the documents matching every condition of
/// `conj`, taken as the whole filter (the caller checks it has no `$or`/`$nor`).
///
/// With no array on the way, a key part is `Missing` exactly when the filter's path
/// finds no candidate (`Path::candidates` then walks object members only, as the
/// key does, dotted paths and numeric segments alike) and otherwise holds the one
/// candidate, which is not an array. So a field's conditions are decided by its key
/// part when the ranges admit, for that field, exactly the parts on which the
/// conditions hold:
/// - every condition is on a bounded field (not one left free, past the range
///   budget or after the interval);
/// - a field's conditions are one `$eq` or `$in` of scalars (the points are those
///   values under [`crate::order::equal`], what `$eq` tests; several such
///   conditions would be narrowed to one list), or only ranges on scalars of one
///   JSON type (the interval is bounded to that type, and a range compares only
///   within its type, [`crate::order::same_type`]); not `$exists`, `$ne`, `$nin`,
///   `$not`, objects or arrays;
/// - the `Missing` entries are read (a `null` among the points: a missing field
///   matches) only for the last bounded field: `Expand` reads them as a prefix
///   range, whatever the later fields hold.
fn exact(
    fields: &[(String, i8)],
    bounds: &[(FieldBound, bool)],
    conj: &[(&Path, &[Cond])],
) -> bool {
    let scalar = |v: &Value| !matches!(v, Value::Array(_) | Value::Object(_));
    let bounded = |path: &str| fields[..bounds.len()].iter().position(|(p, _)| p == path);
    if !conj.iter().all(|(p, _)| bounded(p.as_str()).is_some()) {
        return false;
    }
    bounds.iter().enumerate().all(|(i, (b, missing))| {
        if !matches!(b, FieldBound::Points(_) | FieldBound::Interval(..)) {
            return false;
        }
        if *missing && i + 1 != bounds.len() {
            return false;
        }
        let conds: Vec<&Cond> = conj
            .iter()
            .filter(|(p, _)| p.as_str() == fields[i].0)
            .flat_map(|(_, cs)| cs.iter())
            .collect();
        match conds.as_slice() {
            [Cond::Eq(v)] => scalar(v),
            [Cond::In(vs)] => vs.iter().all(scalar),
            [] => false,
            cs => {
                let mut rank = None;
                cs.iter().all(|c| match c {
                    Cond::Gt(v) | Cond::Gte(v) | Cond::Lt(v) | Cond::Lte(v) => {
                        let r = order::type_rank(v);
                        scalar(v) && *rank.get_or_insert(r) == r
                    }
                    _ => false,
                })
            }
        }
    })
}

/// Whether the filter is a conjunction of field conditions only (no `$or` or
/// `$nor` anywhere in its top-level `$and`s).
fn is_conjunction(f: &Filter) -> bool {
    match f {
        Filter::And(fs) => fs.iter().all(is_conjunction),
        Filter::Field(..) => true,
        Filter::Or(_) | Filter::Nor(_) => false,
    }
}

/// Where a query's candidates come from, when not a scan.
pub(crate) enum Choice {
    /// The ranges of one index.
    Index(IndexPlan),
    /// One unordered plan per branch of a top-level `$or` (see the module doc), their
    /// candidates read once each.
    Union(Vec<IndexPlan>),
}

/// The best plan for a query at snapshot `snap` (only indexes readable there), or
/// `None`: scan.
pub(crate) fn choose(
    coll: &Collection,
    filter: &Filter,
    sort: &[SortField],
    snap: u64,
) -> Option<Choice> {
    let mut indexes: Vec<Arc<SecondaryIndex>> = coll
        .indexes
        .read()
        .iter()
        .filter(|i| i.read().ready().is_some_and(|r| r <= snap))
        .cloned()
        .collect();
    if indexes.is_empty() {
        return None;
    }
    indexes.sort_by(|a, b| a.def.name.cmp(&b.def.name));
    let mut conj = Vec::new();
    conjuncts(filter, &mut conj);
    let mut single = best(&indexes, &conj, sort);
    if let Some((_, p)) = &mut single {
        p.exact &= is_conjunction(filter);
    }
    match union(&indexes, filter, &conj, single.as_ref().map(|(s, _)| *s)) {
        Some(plans) => Some(Choice::Union(plans)),
        None => single.map(|(_, p)| Choice::Index(p)),
    }
}

/// The best-scoring index plan for the conjunction `conj` (ties: the first index by
/// name).
fn best(
    indexes: &[Arc<SecondaryIndex>],
    conj: &[(&Path, &[Cond])],
    sort: &[SortField],
) -> Option<(Score, IndexPlan)> {
    let mut best: Option<(Score, IndexPlan)> = None;
    for i in indexes {
        if let Some((score, plan)) = plan_conj(i, conj, sort) {
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, plan));
            }
        }
    }
    best
}

/// The branch lists of the `$or`s in the filter's top-level conjunction.
fn top_ors<'a>(f: &'a Filter, out: &mut Vec<&'a [Filter]>) {
    match f {
        Filter::And(fs) => fs.iter().for_each(|f| top_ors(f, out)),
        Filter::Or(bs) => out.push(bs),
        Filter::Field(..) | Filter::Nor(_) => {}
    }
}

/// A union plan: for the first top-level `$or` (of at most [`MAX_UNION_BRANCHES`]
/// branches) whose every branch `B`, planned unsorted as the conjunction `conj ∧ B`,
/// has an index plan scoring above `beat` (the single plan's score, when there is
/// one), those plans; else `None`.
fn union(
    indexes: &[Arc<SecondaryIndex>],
    filter: &Filter,
    conj: &[(&Path, &[Cond])],
    beat: Option<Score>,
) -> Option<Vec<IndexPlan>> {
    let mut ors = Vec::new();
    top_ors(filter, &mut ors);
    ors.into_iter()
        .filter(|bs| bs.len() <= MAX_UNION_BRANCHES)
        .find_map(|branches| {
            branches
                .iter()
                .map(|b| {
                    let mut c = conj.to_vec();
                    conjuncts(b, &mut c);
                    let (score, mut plan) = best(indexes, &c, &[])?;
                    // The branch's conjunction is not the whole filter.
                    plan.exact = false;
                    beat.is_none_or(|s| score > s).then_some(plan)
                })
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secondary::IndexDef;

    /// An index that has held an array entry (so every plan reads the via-array
    /// and array ranges), or not.
    fn index_with(name: &str, fields: &[(&str, i8)], arrays: bool) -> Arc<SecondaryIndex> {
        let i = Arc::new(SecondaryIndex::new(IndexDef {
            name: name.into(),
            fields: fields.iter().map(|(p, d)| (p.to_string(), *d)).collect(),
            unique: false,
        }));
        if arrays {
            let parts = fields.iter().map(|_| KeyPart::ViaArray).collect();
            // Added, then deleted: the flag stays.
            i.write().apply(1, Some(Key::exact(parts, i.desc)), 1);
            i.write().apply(1, None, 2);
        }
        i
    }

    fn index(name: &str, fields: &[(&str, i8)]) -> Arc<SecondaryIndex> {
        index_with(name, fields, true)
    }

    fn plan(fields: &[(&str, i8)], filter: Value, sort: Value) -> Option<(Score, Value, bool)> {
        let f = Filter::parse(&filter).ok()?;
        let s = super::super::sort::parse(&sort).ok()?;
        let (score, p) = plan_index(&index("i", fields), &f, &s)?;
        Some((score, p.bounds_json(), p.direction == Direction::Backward))
    }

    /// A database in `dir` holding documents `0..n` (`doc(id)`) in the collection `""`,
    /// with the index `by_a` on `a` built.
    fn indexed_on_a(dir: &std::path::Path, n: u64, doc: impl Fn(u64) -> String) -> crate::Database {
        let db =
            crate::Database::open(dir, crate::Config::default()).unwrap_or_else(|e| panic!("{e}"));
        for id in 0..n {
            db.create("", id, doc(id).as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let def = IndexDef {
            name: "by_a".into(),
            fields: vec![("a".into(), 1)],
            unique: false,
        };
        db.create_index("", def).unwrap_or_else(|e| panic!("{e}"));
        db
    }

    #[test]
    fn an_index_built_after_the_snapshot_is_not_chosen() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = indexed_on_a(dir.path(), 20, |id| format!(r#"{{"a":{}}}"#, id % 4));
        let coll = db.inner.collection("").unwrap_or_else(|e| panic!("{e}"));
        let ready = coll.indexes.read()[0].read().ready().unwrap_or_default();
        let f = Filter::parse(&json!({"a": 1})).unwrap_or_else(|e| panic!("{e}"));
        assert!(choose(&coll, &f, &[], ready.saturating_sub(1)).is_none());
        let p = choose(&coll, &f, &[], ready);
        let name = match p {
            Some(Choice::Index(p)) => Some(p.index.def.name.clone()),
            _ => None,
        };
        assert_eq!(name, Some("by_a".into()));
        // And the page through it: explain names the index, which decides the filter
        // (no array in it): its five entries are the rows, no document is tested.
        let q = crate::Query::parse(br#"{"filter":{"a":1},"explain":true}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let page = db.query("", &q).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<u64> = page.rows.iter().map(|r| r.0).collect();
        assert_eq!(ids, vec![1, 5, 9, 13, 17]);
        let plan = page.plan.map(|p| p.to_json()).unwrap_or_default();
        assert_eq!(
            (
                &plan["kind"],
                &plan["index"],
                &plan["examined"],
                &plan["keys_examined"],
                &plan["exact"]
            ),
            (
                &json!("index"),
                &json!("by_a"),
                &json!(0),
                &json!(5),
                &json!(true)
            )
        );
    }

    const MISSING: &str = r#"{"$missing":true}"#;

    fn missing() -> Value {
        serde_json::from_str(MISSING).unwrap_or_default()
    }

    fn via() -> Value {
        json!({"$via_array": true})
    }

    #[test]
    fn missing_entries_are_read_only_when_a_missing_field_can_match() {
        let miss = json!([{"included": [missing()]}, {"included": [missing()]}]);
        let reads_missing = |f: Value| {
            let (_, b, _) = plan(&[("a", 1)], f.clone(), json!([])).unwrap_or_default();
            let b = b.as_array().cloned().unwrap_or_default();
            assert!(
                b.contains(&json!([{"included": [via()]}, {"included": [via()]}])),
                "{f}"
            );
            b.contains(&miss)
        };
        // Conditions a missing field fails: its entries are skipped.
        for f in [
            json!({"a": 5}),
            json!({"a": {"$in": [1, "x"]}}),
            json!({"a": {"$gte": 1}}),
            json!({"a": {"$lt": "m"}}),
            json!({"a": 5, "b": {"$exists": false}}),
            json!({"a": {"$in": [1, 2], "$ne": null}}),
            // One condition that fails on a missing field is enough (a conjunction).
            json!({"a": {"$in": [1], "$nin": [2]}}),
        ] {
            assert!(!reads_missing(f.clone()), "{f}");
        }
        // Null matches a missing field, and so does a negation.
        for f in [
            json!({"a": null}),
            json!({"a": {"$in": [1, null]}}),
            json!({"a": {"$in": [1, null], "$nin": [2]}}),
            json!({"a": {"$eq": null, "$not": {"$gt": 5}}}),
        ] {
            assert!(reads_missing(f.clone()), "{f}");
        }
        // $exists: true alone bounds the field: everything after the missing entries.
        let (score, b, _) =
            plan(&[("a", 1)], json!({"a": {"$exists": true}}), json!([])).unwrap_or_default();
        assert_eq!(
            (score, b),
            ((0, true, false), json!([[{"included": [via()]}, null]]))
        );
        let (_, b, _) =
            plan(&[("a", -1)], json!({"a": {"$exists": true}}), json!([])).unwrap_or_default();
        assert_eq!(b, json!([[null, {"included": [via()]}]]));
        // In a compound index, per field.
        let (_, b, _) =
            plan(&[("a", 1), ("b", 1)], json!({"a": 1, "b": null}), json!([])).unwrap_or_default();
        assert!(b.as_array().is_some_and(|b| {
            b.contains(&json!([{"included": [1, missing()]}, {"included": [1, missing()]}]))
                && !b.contains(&miss)
        }));
    }

    /// An index that never held an array or via-array entry reads an equality as one
    /// range; once one is written (even if deleted since, so older snapshots may see
    /// it) the array ranges are read again and an element match is found.
    #[test]
    fn an_index_without_arrays_reads_only_the_points() {
        let bounds = |arrays: bool, filter: Value| {
            let f = Filter::parse(&filter).unwrap_or_else(|e| panic!("{e}"));
            let (_, p) = plan_index(&index_with("i", &[("a", 1)], arrays), &f, &[])
                .unwrap_or_else(|| panic!("no plan"));
            p.bounds_json()
        };
        assert_eq!(
            bounds(false, json!({"a": 5})),
            json!([[{"included": [5]}, {"included": [5]}]])
        );
        assert_eq!(
            bounds(false, json!({"a": null})),
            json!([
                [{"included": [missing()]}, {"included": [missing()]}],
                [{"included": [null]}, {"included": [null]}],
            ])
        );
        assert_eq!(
            bounds(true, json!({"a": 5})).as_array().map(Vec::len),
            Some(3)
        );

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = indexed_on_a(dir.path(), 10, |id| format!(r#"{{"a":{id}}}"#));
        let find = |db: &crate::Database| {
            let q = crate::Query::parse(br#"{"filter":{"a":5},"explain":true}"#)
                .unwrap_or_else(|e| panic!("{e}"));
            let page = db.query("", &q).unwrap_or_else(|e| panic!("{e}"));
            let ranges = page
                .plan
                .map(|p| p.to_json()["bounds"].as_array().map_or(0, Vec::len))
                .unwrap_or_default();
            (page.rows.iter().map(|r| r.0).collect::<Vec<_>>(), ranges)
        };
        assert_eq!(find(&db), (vec![5], 1));
        // An array holding 5 matches; so does one reached through an array.
        db.create("", 20, br#"{"a":[4,5]}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(find(&db), (vec![5, 20], 3));
        db.delete("", 20).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(find(&db), (vec![5], 3), "the flag is never cleared");
        drop(db);
        // Reopened, the index is loaded or rebuilt with its arrays: still found.
        let db = crate::Database::open(dir.path(), crate::Config::default())
            .unwrap_or_else(|e| panic!("{e}"));
        db.create("", 22, br#"{"a":[5]}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(find(&db).0, vec![5, 22]);
    }

    #[test]
    fn equality_and_in_read_points_plus_missing_and_arrays() {
        let (score, bounds, _) = plan(&[("a", 1)], json!({"a": 5}), json!([])).unwrap_or_default();
        assert_eq!(score, (1, false, false));
        assert_eq!(
            bounds,
            json!([
                [{"included": [via()]}, {"included": [via()]}],
                [{"included": [5]}, {"included": [5]}],
                [{"included": [[]]}, {"excluded": [false]}],
            ])
        );
        // $in: deduplicated under the value order (1 == 1.0), arrays left to the
        // array range, in key order.
        let (_, bounds, _) = plan(
            &[("a", 1)],
            json!({"a": {"$in": ["x", 1, 1.0, [2]]}}),
            json!([]),
        )
        .unwrap_or_default();
        assert_eq!(
            bounds,
            json!([
                [{"included": [via()]}, {"included": [via()]}],
                [{"included": [1]}, {"included": [1]}],
                [{"included": ["x"]}, {"included": ["x"]}],
                [{"included": [[]]}, {"excluded": [false]}],
            ])
        );
    }

    #[test]
    fn ranges_are_bounded_to_the_operand_type() {
        let (score, bounds, _) =
            plan(&[("n", 1)], json!({"n": {"$gt": 3}}), json!([])).unwrap_or_default();
        assert_eq!(score, (0, true, false));
        assert_eq!(bounds[1], json!([{"excluded": [3]}, {"excluded": [""]}]));
        let (_, bounds, _) = plan(
            &[("s", 1)],
            json!({"s": {"$gte": "b", "$lt": "d"}}),
            json!([]),
        )
        .unwrap_or_default();
        assert_eq!(bounds[1], json!([{"included": ["b"]}, {"excluded": ["d"]}]));
        // A descending field: the index's lower bound is the larger value.
        let (_, bounds, _) =
            plan(&[("n", -1)], json!({"n": {"$lte": 3}}), json!([])).unwrap_or_default();
        assert_eq!(
            bounds,
            json!([
                [{"excluded": [false]}, {"included": [[]]}],
                [{"included": [3]}, {"excluded": [null]}],
                [{"included": [via()]}, {"included": [via()]}],
            ])
        );
        // Contradictory types: only the missing and array entries can match.
        let (_, bounds, _) =
            plan(&[("n", 1)], json!({"n": {"$gt": 3, "$lt": "z"}}), json!([])).unwrap_or_default();
        assert_eq!(bounds.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn compound_prefixes_sorts_and_what_falls_back() {
        // Equality on the first field, a range on the second.
        let (score, bounds, _) = plan(
            &[("a", 1), ("b", 1)],
            json!({"a": "x", "b": {"$lt": 2}}),
            json!([]),
        )
        .unwrap_or_default();
        assert_eq!(score, (1, true, false));
        assert!(bounds.as_array().is_some_and(
            |b| b.contains(&json!([{"excluded": ["x", null]}, {"excluded": ["x", 2]}]))
        ));
        // Only the second field constrained: no prefix, no plan.
        assert_eq!(
            plan(&[("a", 1), ("b", 1)], json!({"b": 1}), json!([])),
            None
        );
        // A sort prefix, forward and reversed; a mixed direction or another path is not.
        let p = plan(&[("a", 1), ("b", -1)], json!({}), json!([["a", 1]])).unwrap_or_default();
        assert_eq!((p.0, p.2), ((0, false, true), false));
        let p = plan(
            &[("a", 1), ("b", -1)],
            json!({}),
            json!([["a", -1], ["b", 1]]),
        )
        .unwrap_or_default();
        assert_eq!((p.0, p.2), ((0, false, true), true));
        assert_eq!(
            plan(
                &[("a", 1), ("b", -1)],
                json!({}),
                json!([["a", 1], ["b", 1]])
            ),
            None
        );
        assert_eq!(plan(&[("a.0", 1)], json!({}), json!([["a.0", 1]])), None);
        // A sort after an equality prefix: ordered; the prefix's missing and array
        // entries are read first, unordered.
        let f = Filter::parse(&json!({"status": "open"})).unwrap_or_else(|e| panic!("{e}"));
        let s = super::super::sort::parse(&json!([["date", 1]])).unwrap_or_default();
        let i = index("i", &[("status", 1), ("date", -1)]);
        let (score, p) = plan_index(&i, &f, &s).unwrap_or_else(|| panic!("no plan"));
        assert_eq!(score, (1, false, true));
        assert_eq!(
            (
                p.direction,
                p.prefix.clone(),
                p.unordered.len(),
                p.ranges.len()
            ),
            (
                Direction::Backward,
                vec![KeyPart::Value(json!("open"))],
                2,
                1
            )
        );
        // Two values for the prefix: not ordered.
        let f = Filter::parse(&json!({"status": {"$in": ["a", "b"]}}))
            .unwrap_or_else(|e| panic!("{e}"));
        let (score, _) = plan_index(&i, &f, &s).unwrap_or_else(|| panic!("no plan"));
        assert_eq!(score, (1, false, false));
        // Operators an index cannot bound, and $or, give no single-index plan (an
        // $or may still give a union: `choose`).
        for f in [
            json!({"a": {"$ne": 1}}),
            json!({"a": {"$nin": [1]}}),
            json!({"a": {"$not": {"$eq": 1}}}),
            json!({"a": {"$exists": false}}),
            json!({"$or": [{"a": 1}, {"a": 2}]}),
        ] {
            assert_eq!(plan(&[("a", 1)], f.clone(), json!([])), None, "{f}");
        }
        // $in lists multiplying past the range budget stop at the prefix that fits.
        let many: Vec<i64> = (0..100).collect();
        let (score, _, _) = plan(
            &[("a", 1), ("b", 1)],
            json!({"a": {"$in": many}, "b": {"$in": many}}),
            json!([]),
        )
        .unwrap_or_default();
        assert_eq!(score, (1, false, false));
    }
}
