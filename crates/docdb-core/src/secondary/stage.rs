//! A commit's index changes: computed and checked while the commit is validated
//! (nothing changes if a unique index would get a duplicate key or the memory limit
//! would be passed), applied with the commit's document versions, under the commit
//! lock. No WAL record of its own: replaying the document's record implies it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::key::{key_of, Key};
use super::tree::{entry_bytes, SecondaryIndex};
use crate::commit::{DocKind, StagedOp};
use crate::error::{Error, Result};

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

impl Plan {
    /// Computes every indexed document's new key, checks unique indexes against the
    /// newest state (staged-but-unwritten commits included) and against the commit's
    /// own other writes, and measures the memory. Call under the commit lock.
    pub(crate) fn of(ops: &[StagedOp]) -> Result<Plan> {
        let mut plan = Plan::default();
        for op in ops {
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
            let doc: Option<Value> = match kind {
                DocKind::Create | DocKind::Update | DocKind::Put => {
                    Some(serde_json::from_slice(payload).map_err(|_| Error::InvalidJson)?)
                }
                DocKind::Delete | DocKind::Remove => None,
            };
            for index in indexes {
                let new = doc
                    .as_ref()
                    .map(|d| key_of(d, &index.def.fields, index.desc));
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
