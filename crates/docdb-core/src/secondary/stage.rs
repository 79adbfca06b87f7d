//! A commit's index changes: computed and checked while the commit is validated
//! (nothing changes if a unique index would get a duplicate key or the memory limit
//! would be passed), applied with the commit's document versions, under the commit
//! lock. No WAL record of its own: replaying the document's record implies it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::key::{key_of, Key};
use super::tree::{entry_bytes, SecondaryIndex};
use crate::commit::{DocKind, StagedOp};
use crate::error::{Error, Result};
use crate::partial::Fields;

struct Change {
    index: Arc<SecondaryIndex>,
    id: u64,
    new: Option<Key>,
}

/// The index changes of one commit and the memory they add and free.
#[derive(Default)]
pub(crate) struct Plan {
    changes: Vec<Change>,
    pub grow: u64,
    pub shrink: u64,
}

/// The index keys of a commit's documents, computed before the commit lock is taken
/// (parsing the documents is most of an indexed write's CPU, and under the lock it
/// would run one writer at a time). [`Plan::of`] uses an op's keys when its
/// collection still has the same indexes, and computes them again otherwise.
#[derive(Default)]
pub(crate) struct Prepared {
    /// Per op (same positions as the ops): the indexes seen and each one's new key.
    keys: Vec<Option<OpKeys>>,
}

/// One op's indexes as seen before the commit lock, and its new key under each.
type OpKeys = (Vec<Arc<SecondaryIndex>>, Vec<Option<Key>>);

impl Prepared {
    /// The keys of every op of `ops` that writes a document of an indexed collection.
    /// A document that does not parse gets none: [`Plan::of`] reports it.
    pub(crate) fn of(ops: &[StagedOp]) -> Prepared {
        let mut keys = Vec::with_capacity(ops.len());
        let mut any = false;
        for op in ops {
            let StagedOp::Doc {
                coll,
                kind,
                payload,
                ..
            } = op
            else {
                keys.push(None);
                continue;
            };
            let indexes = coll.indexes.read().clone();
            if indexes.is_empty() {
                keys.push(None);
                continue;
            }
            let computed = keys_of(&indexes, *kind, payload).ok();
            any |= computed.is_some();
            keys.push(computed.map(|k| (indexes, k)));
        }
        if !any {
            keys.clear();
        }
        Prepared { keys }
    }

    /// Op `i`'s keys if they were computed for exactly `indexes`.
    fn take(&mut self, i: usize, indexes: &[Arc<SecondaryIndex>]) -> Option<Vec<Option<Key>>> {
        let (seen, keys) = self.keys.get_mut(i)?.take()?;
        let same =
            seen.len() == indexes.len() && seen.iter().zip(indexes).all(|(a, b)| Arc::ptr_eq(a, b));
        same.then_some(keys)
    }
}

/// The keys of a document write under each of `indexes` (`None` for a delete),
/// parsing only the indexed paths of the document.
fn keys_of(
    indexes: &[Arc<SecondaryIndex>],
    kind: DocKind,
    payload: &[u8],
) -> Result<Vec<Option<Key>>> {
    match kind {
        DocKind::Create | DocKind::Update | DocKind::Put => {
            let fields = Fields::new(
                indexes
                    .iter()
                    .flat_map(|i| i.def.fields.iter().map(|(p, _)| p.split('.'))),
            );
            // Bounded: serde_json's recursion limit, as a full parse has here.
            let doc = fields
                .parse(payload, true)
                .map_err(|_| Error::InvalidJson)?;
            Ok(indexes
                .iter()
                .map(|index| Some(key_of(&doc, &index.def.fields, index.desc)))
                .collect())
        }
        DocKind::Delete | DocKind::Remove => Ok(vec![None; indexes.len()]),
    }
}

impl Plan {
    /// Computes every indexed document's new key (or takes it from `prepared`),
    /// checks unique indexes against the newest state (staged-but-unwritten commits
    /// included) and against the commit's own other writes, and measures the memory.
    /// Call under the commit lock.
    pub(crate) fn of(ops: &[StagedOp], mut prepared: Prepared) -> Result<Plan> {
        let mut plan = Plan::default();
        for (i, op) in ops.iter().enumerate() {
            let StagedOp::Doc {
                coll,
                id,
                kind,
                payload,
                ..
            } = op
            else {
                continue;
            };
            let indexes = coll.indexes.read().clone();
            if indexes.is_empty() {
                continue;
            }
            let keys = match prepared.take(i, &indexes) {
                Some(keys) => keys,
                None => keys_of(&indexes, *kind, payload)?,
            };
            for (index, new) in indexes.into_iter().zip(keys) {
                plan.changes.push(Change {
                    index,
                    id: *id,
                    new,
                });
            }
        }
        if plan.changes.is_empty() {
            return Ok(plan);
        }
        plan.measure();
        plan.check_unique()?;
        Ok(plan)
    }

    /// Memory: only built indexes count per write (a building index is counted as a
    /// whole when its build ends).
    fn measure(&mut self) {
        let mut latest: HashMap<(*const SecondaryIndex, u64), Option<Key>> = HashMap::new();
        for ch in &self.changes {
            let ptr = Arc::as_ptr(&ch.index);
            let state = ch.index.read();
            if state.ready().is_none() {
                continue;
            }
            let old = match latest.get(&(ptr, ch.id)) {
                Some(k) => k.clone(),
                None => state.key_of(ch.id).cloned(),
            };
            if old != ch.new {
                self.shrink += old.as_ref().map_or(0, entry_bytes);
                self.grow += ch.new.as_ref().map_or(0, entry_bytes);
            }
            latest.insert((ptr, ch.id), ch.new.clone());
        }
    }

    fn check_unique(&self) -> Result<()> {
        // Each unique index's final keys in this commit (a later write of an id wins).
        type Finals<'a> = Vec<(&'a Arc<SecondaryIndex>, HashMap<u64, Option<&'a Key>>)>;
        let mut finals: Finals<'_> = Vec::new();
        for ch in self.changes.iter().filter(|c| c.index.def.unique) {
            let pos = match finals.iter().position(|(i, _)| Arc::ptr_eq(i, &ch.index)) {
                Some(p) => p,
                None => {
                    finals.push((&ch.index, HashMap::new()));
                    finals.len() - 1
                }
            };
            finals[pos].1.insert(ch.id, ch.new.as_ref());
        }
        for (index, keys) in finals {
            let dup = || Error::DuplicateKey {
                index: index.def.name.clone(),
            };
            let state = index.read();
            let mut seen: BTreeMap<&Key, u64> = BTreeMap::new();
            for (&id, key) in &keys {
                let Some(key) = key.filter(|k| !k.all_missing()) else {
                    continue;
                };
                if seen.insert(key, id).is_some() {
                    return Err(dup());
                }
                // Another document holding the key keeps it unless this commit
                // rewrites that document too.
                if state
                    .live_ids_with(key)
                    .into_iter()
                    .any(|other| other != id && !keys.contains_key(&other))
                {
                    return Err(dup());
                }
            }
        }
        Ok(())
    }

    /// Applies the changes at `seq` and prunes what no snapshot `>= oldest` sees.
    pub(crate) fn apply(self, seq: u64, oldest: u64) {
        let mut touched: Vec<Arc<SecondaryIndex>> = Vec::new();
        for ch in self.changes {
            ch.index.write().apply(ch.id, ch.new, seq);
            if !touched.iter().any(|t| Arc::ptr_eq(t, &ch.index)) {
                touched.push(ch.index);
            }
        }
        for index in touched {
            index.write().prune(oldest);
        }
    }
}
