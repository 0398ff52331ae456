//! The newest Raft log entries, decoded, in memory. openraft reads each entry back right after
//! appending it: once per follower to replicate it (on the leader) and once to apply it (on every
//! node). Served from here, those reads skip a RocksDB iterator and a bincode decode each.
//!
//! The cache always holds a suffix of the stored log (consecutive indexes ending at the last
//! stored entry) or nothing: every append, truncation and purge of the log passes through it.
//! A read that starts inside it is answered from it; any other read goes to RocksDB.

use std::collections::VecDeque;

use openraft::type_config::alias::EntryOf;
use parking_lot::Mutex;

use crate::types::TypeConfig;

type Entry = EntryOf<TypeConfig>;

/// Bytes (encoded size) of entries kept; older ones are dropped first.
const MAX_BYTES: usize = 16 << 20;

#[derive(Default)]
pub(crate) struct LogCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Entries with consecutive indexes, each with its encoded size.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Inner {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn pop_back(&mut self) {
        if let Some((_, n)) = self.entries.pop_back() {
            self.bytes -= n;
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, n)) = self.entries.pop_front() {
            self.bytes -= n;
        }
    }
}

impl LogCache {
    /// Entries just written to the log (consecutive, in order), each with its encoded size.
    pub(crate) fn appended(&self, batch: Vec<(Entry, usize)>) {
        let mut c = self.inner.lock();
        let Some(first) = batch.first().map(|(e, _)| e.log_id.index) else {
            return;
        };
        // An append over existing indexes replaces them and everything after.
        while c
            .entries
            .back()
            .is_some_and(|(e, _)| e.log_id.index >= first)
        {
            c.pop_back();
        }
        let contiguous = c
            .entries
            .back()
            .is_none_or(|(e, _)| e.log_id.index + 1 == first);
        if !contiguous {
            // A gap would break the suffix rule: start over from this batch.
            c.entries.clear();
            c.bytes = 0;
        }
        for (entry, size) in batch {
            c.bytes += size;
            c.entries.push_back((entry, size));
        }
        while c.bytes > MAX_BYTES && c.entries.len() > 1 {
            c.pop_front();
        }
    }

    /// The log lost every entry from `from` on.
    pub(crate) fn truncated(&self, from: u64) {
        let mut c = self.inner.lock();
        while c
            .entries
            .back()
            .is_some_and(|(e, _)| e.log_id.index >= from)
        {
            c.pop_back();
        }
    }

    /// The log lost every entry below `upto`.
    pub(crate) fn purged(&self, upto: u64) {
        let mut c = self.inner.lock();
        while c.first_index().is_some_and(|i| i < upto) {
            c.pop_front();
        }
    }

    /// The stored entries in `start..end`, if the cache can tell: `start` is at or after its first
    /// entry (the cache then holds every stored entry of the range).
    pub(crate) fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let c = self.inner.lock();
        let first = c.first_index()?;
        if start < first {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        let take = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
        Some(
            c.entries
                .iter()
                .skip(skip)
                .take(take)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;

    use super::*;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: openraft::testing::log_id::<TypeConfig>(1, 1, index),
            payload: EntryPayload::Blank,
        }
    }

    fn batch(range: std::ops::Range<u64>) -> Vec<(Entry, usize)> {
        range.map(|i| (entry(i), 10)).collect()
    }

    fn indexes(v: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn answers_reads_inside_the_suffix_only() {
        let c = LogCache::default();
        assert_eq!(indexes(c.get(0, 10)), None);
        c.appended(batch(5..8));
        c.appended(batch(8..10));
        assert_eq!(indexes(c.get(6, 9)), Some(vec![6, 7, 8]));
        // Past the end: what is stored, as RocksDB would answer.
        assert_eq!(indexes(c.get(8, u64::MAX)), Some(vec![8, 9]));
        assert_eq!(indexes(c.get(12, 20)), Some(vec![]));
        assert_eq!(indexes(c.get(4, 9)), None);
    }

    #[test]
    fn follows_truncation_purge_and_overwrite() {
        let c = LogCache::default();
        c.appended(batch(1..10));
        c.truncated(7);
        assert_eq!(indexes(c.get(5, 100)), Some(vec![5, 6]));
        // A new leader's entries overwrite from 6 on.
        c.appended(batch(6..8));
        assert_eq!(indexes(c.get(1, 100)), Some((1..8).collect()));
        c.purged(4);
        assert_eq!(indexes(c.get(3, 100)), None);
        assert_eq!(indexes(c.get(4, 5)), Some(vec![4]));
        // A batch that does not follow the cached suffix replaces it.
        c.appended(batch(20..22));
        assert_eq!(indexes(c.get(4, 100)), None);
        assert_eq!(indexes(c.get(20, 100)), Some(vec![20, 21]));
    }

    #[test]
    fn keeps_a_bounded_number_of_bytes() {
        let c = LogCache::default();
        let big = MAX_BYTES / 4;
        c.appended((0..8).map(|i| (entry(i), big)).collect());
        assert_eq!(indexes(c.get(0, 100)), None);
        assert_eq!(indexes(c.get(4, 100)), Some(vec![4, 5, 6, 7]));
    }
}
