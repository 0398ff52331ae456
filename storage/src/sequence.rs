//! Sequence values. A sequence's definition is a catalog entry; its state (the last value handed
//! out anywhere, and whether `nextval` was ever called) is one key, `m s id`, written like any
//! other key, so it goes through the Raft log in a cluster and survives restarts.
//!
//! `nextval` does not write that key for every value. A node takes a block of values at once (at
//! least `BLOCK`, or the sequence's CACHE if larger) in a small transaction of its own, then hands
//! them out from memory to every session on the node. So, as in PostgreSQL, values are unique but
//! neither gap-free nor transactional: a rolled-back insert's value is gone, and a restart skips
//! the rest of each block (PostgreSQL skips up to 32 after a crash). On one node the values come
//! in order; on several, each node counts through its own block.

use std::collections::{HashMap, VecDeque};

use crate::catalog::{SequenceDef, TableId};
use crate::codec::layout;
use crate::error::{Error, Result, SequenceError};
use crate::reader::TxnReader;
use crate::storage::Storage;
use crate::txn::Txn;

/// The fewest values a node takes from a sequence at once.
pub const BLOCK: i64 = 32;

/// How often a block allocation that lost a write conflict is retried.
const CONFLICT_RETRIES: usize = 50;

/// A sequence's stored state, as PostgreSQL's `last_value` and `is_called`, and how many times
/// it was reset (`setval`, `TRUNCATE … RESTART IDENTITY`): a node's block from before a reset is
/// dropped instead of handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceState {
    pub last: i64,
    pub called: bool,
    pub generation: u32,
}

impl SequenceState {
    /// A sequence never called: its first `nextval` returns `start`.
    pub fn initial(def: &SequenceDef) -> SequenceState {
        SequenceState {
            last: def.start,
            called: false,
            generation: 0,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13);
        out.push(u8::from(self.called));
        out.extend_from_slice(&self.last.to_be_bytes());
        out.extend_from_slice(&self.generation.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<SequenceState> {
        match bytes {
            [called, rest @ ..] if rest.len() == 12 => Ok(SequenceState {
                last: i64::from_be_bytes(rest[..8].try_into().unwrap_or_default()),
                called: *called != 0,
                generation: u32::from_be_bytes(rest[8..].try_into().unwrap_or_default()),
            }),
            _ => Err(Error::Corruption(format!(
                "sequence state of {} bytes",
                bytes.len()
            ))),
        }
    }

    /// The next value, advancing the state; at the end of a sequence without CYCLE, 2200H and the
    /// state unchanged.
    pub fn advance(&mut self, def: &SequenceDef) -> Result<i64> {
        if !self.called {
            self.called = true;
            return Ok(self.last);
        }
        let next = self
            .last
            .checked_add(def.increment)
            .filter(|v| (def.min..=def.max).contains(v));
        let value = match next {
            Some(v) => v,
            None if def.cycle && def.increment > 0 => def.min,
            None if def.cycle => def.max,
            None => {
                let (end, limit) = if def.increment > 0 {
                    ("maximum", def.max)
                } else {
                    ("minimum", def.min)
                };
                return Err(Error::Sequence {
                    kind: SequenceError::Limit,
                    message: format!(
                        "nextval: reached {end} value of sequence \"{}\" ({limit})",
                        def.name
                    ),
                });
            }
        };
        self.last = value;
        Ok(value)
    }

    /// Up to `n` next values; fewer when the sequence ends within them, an error when it has ended.
    pub fn take(&mut self, def: &SequenceDef, n: i64) -> Result<Vec<i64>> {
        let mut values = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        while (values.len() as i64) < n {
            match self.advance(def) {
                Ok(v) => values.push(v),
                Err(e) if values.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(values)
    }

    /// `setval(value, called)`: a reset; 22003 (and no change) if `value` is outside the range.
    pub fn set(&mut self, def: &SequenceDef, value: i64, called: bool) -> Result<()> {
        if !(def.min..=def.max).contains(&value) {
            return Err(Error::Sequence {
                kind: SequenceError::OutOfBounds,
                message: format!(
                    "setval: value {value} is out of bounds for sequence \"{}\" ({}..{})",
                    def.name, def.min, def.max
                ),
            });
        }
        *self = SequenceState {
            last: value,
            called,
            generation: self.generation.wrapping_add(1),
        };
        Ok(())
    }

    /// `TRUNCATE … RESTART IDENTITY`: back to the start, as a reset.
    pub fn restart(&mut self, def: &SequenceDef) {
        *self = SequenceState {
            generation: self.generation.wrapping_add(1),
            ..SequenceState::initial(def)
        };
    }
}

/// Values this node took from sequences and has not handed out yet.
#[derive(Default)]
pub(crate) struct SequenceCache {
    /// Per sequence: the generation the block was taken in, and its values left.
    values: parking_lot::Mutex<HashMap<TableId, (u32, VecDeque<i64>)>>,
    /// One block allocation at a time on a node: concurrent ones would only conflict.
    alloc: tokio::sync::Mutex<()>,
}

impl TxnReader {
    /// The sequence's state in this view (the transaction's own writes included).
    pub fn sequence_state(&self, def: &SequenceDef) -> Result<SequenceState> {
        match self.with_view(|v| v.get(&layout::sequence_key(def.id)))? {
            Some(bytes) => SequenceState::decode(&bytes),
            None => Ok(SequenceState::initial(def)),
        }
    }
}

impl Txn {
    /// Writes a sequence's state in this transaction (for a sequence it created itself, whose
    /// values cannot come from the node's blocks before it commits).
    pub fn set_sequence_state(&mut self, id: TableId, state: SequenceState) -> Result<()> {
        self.check_usable()?;
        self.write(layout::sequence_key(id), Some(state.encode()));
        Ok(())
    }

    /// `TRUNCATE … RESTART IDENTITY` of a sequence, in this transaction.
    pub fn restart_sequence(&mut self, def: &SequenceDef) -> Result<()> {
        let mut state = self.reader().sequence_state(def)?;
        state.restart(def);
        self.set_sequence_state(def.id, state)
    }

    pub(crate) fn drop_sequence_state(&mut self, id: TableId) {
        self.write(layout::sequence_key(id), None);
    }
}

impl Storage {
    /// A value of committed sequence `id` from this node's block, if one is left and the
    /// sequence was not reset since the block was taken (one point read of its state).
    pub fn nextval_cached(&self, id: TableId) -> Option<i64> {
        let values = &self.inner.sequences.values;
        if values
            .lock()
            .get(&id)
            .is_none_or(|(_, block)| block.is_empty())
        {
            return None;
        }
        // Read outside the lock, so sessions taking values do not wait on each other's reads.
        let current = self
            .inner
            .engine
            .get_latest(&layout::sequence_key(id))
            .ok()
            .flatten()
            .and_then(|stored| {
                let (_, payload) = layout::decode_value(&stored).ok()?;
                SequenceState::decode(payload?).ok()
            });
        let mut values = values.lock();
        let (generation, block) = values.get_mut(&id)?;
        if current.map(|s| s.generation) != Some(*generation) {
            block.clear();
            return None;
        }
        block.pop_front()
    }

    /// The next value of committed sequence `id`, taking a new block (one commit, through Raft in
    /// a cluster) when this node's is used up. Outside any caller's transaction: never rolled back.
    pub async fn nextval(&self, id: TableId) -> Result<i64> {
        if let Some(v) = self.nextval_cached(id) {
            return Ok(v);
        }
        let cache = &self.inner.sequences;
        let _one = cache.alloc.lock().await;
        if let Some(v) = self.nextval_cached(id) {
            return Ok(v);
        }
        let (generation, block) = self
            .update_sequence(id, |def, state| {
                Ok((state.generation, state.take(def, def.cache.max(BLOCK))?))
            })
            .await?;
        let mut block = block.into_iter();
        let first = block
            .next()
            .ok_or_else(|| Error::InvalidArgument(format!("sequence {id} gave an empty block")))?;
        cache
            .values
            .lock()
            .insert(id, (generation, block.collect()));
        Ok(first)
    }

    /// `setval`: sets committed sequence `id`'s state. Every node drops the rest of its block
    /// once it has applied the change.
    pub async fn setval(&self, id: TableId, value: i64, called: bool) -> Result<()> {
        let cache = &self.inner.sequences;
        let _one = cache.alloc.lock().await;
        self.update_sequence(id, |def, state| state.set(def, value, called))
            .await?;
        cache.values.lock().remove(&id);
        Ok(())
    }

    /// Reads, changes and commits a sequence's state in a transaction of its own, retrying when
    /// another node's allocation committed first (the retry reads the new state, so no value is
    /// handed out twice).
    async fn update_sequence<T>(
        &self,
        id: TableId,
        f: impl Fn(&SequenceDef, &mut SequenceState) -> Result<T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            let mut txn = self.begin();
            let catalog = txn.catalog();
            let def = catalog.sequence_by_id(id).ok_or_else(|| Error::Sequence {
                kind: SequenceError::Gone,
                message: format!("sequence with OID {id} does not exist"),
            })?;
            let mut state = txn.reader().sequence_state(def)?;
            let out = f(def, &mut state)?;
            txn.set_sequence_state(id, state)?;
            match txn.commit().await {
                Ok(_) => return Ok(out),
                Err(Error::SerializationFailure { .. }) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    // A follower's next snapshot must include the allocation that won.
                    self.read_barrier().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::DataType;

    fn seq(start: i64, increment: i64, min: i64, max: i64, cycle: bool) -> SequenceDef {
        SequenceDef {
            id: 1,
            name: "s".into(),
            data_type: DataType::Int64,
            start,
            increment,
            min,
            max,
            cache: 1,
            cycle,
            owned_by: None,
        }
    }

    #[test]
    fn counts_from_start_by_increment() {
        let def = seq(5, 3, 1, 100, false);
        let mut s = SequenceState::initial(&def);
        assert_eq!(s.take(&def, 4).unwrap(), vec![5, 8, 11, 14]);
        assert_eq!(
            s,
            SequenceState {
                last: 14,
                called: true,
                generation: 0
            }
        );
    }

    #[test]
    fn stops_at_the_limit_without_cycle() {
        let def = seq(1, 1, 1, 3, false);
        let mut s = SequenceState::initial(&def);
        assert_eq!(s.take(&def, 32).unwrap(), vec![1, 2, 3]);
        let e = s.take(&def, 32).unwrap_err();
        assert!(
            e.to_string()
                .contains("reached maximum value of sequence \"s\" (3)"),
            "{e}"
        );
        assert_eq!(s.last, 3);
    }

    #[test]
    fn descending_cycles_back_to_max() {
        let def = seq(-1, -2, -5, -1, true);
        let mut s = SequenceState::initial(&def);
        assert_eq!(s.take(&def, 5).unwrap(), vec![-1, -3, -5, -1, -3]);
    }

    #[test]
    fn never_overflows_i64() {
        let def = seq(i64::MAX - 1, 1, 1, i64::MAX, false);
        let mut s = SequenceState::initial(&def);
        assert_eq!(s.take(&def, 5).unwrap(), vec![i64::MAX - 1, i64::MAX]);
        assert!(s.advance(&def).is_err());
    }

    #[test]
    fn set_checks_bounds_and_round_trips() {
        let def = seq(1, 1, 1, 10, false);
        let mut s = SequenceState::initial(&def);
        assert!(s.set(&def, 11, true).is_err());
        assert_eq!(s, SequenceState::initial(&def));
        s.set(&def, 7, false).unwrap();
        assert_eq!(s.generation, 1);
        assert_eq!(SequenceState::decode(&s.encode()).unwrap(), s);
        assert_eq!(s.advance(&def).unwrap(), 7);
        s.restart(&def);
        assert_eq!((s.generation, s.advance(&def).unwrap()), (2, 1));
    }
}
