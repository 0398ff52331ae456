//! What LWW replication between nodes needs from storage: this node's origin log (read, wait,
//! purge), the per-origin positions, applying peers' entries, range checksums and row states for
//! a full sync, table digests, tombstone purge, and the clock-skew test hook.
//!
//! ```text
//!  origin node                                     receiving node
//!  lww_log_read(after) ──entries──▶ (peer RPC) ──▶ lww_apply(origin, entries) ─▶ committer
//!         │ Purged                                     │ position `p origin` in the same batch
//!         ▼                                            ▼
//!  lww_bucket_checksums / lww_bucket_rows ───────▶ lww_merge_rows + lww_set_position
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use tokio::sync::oneshot;

use crate::catalog::{Consistency, TableId};
use crate::codec::layout;
use crate::committer::Msg;
use crate::engine::{CF_DATA, CF_LWW};
use crate::error::{engine as engine_err, Error, Result};
use crate::lww::{
    bucket_of, log_key, position_key, row_state_key, LogRead, LwwEntry, NodeId, RowState,
    SYNC_BUCKETS, TAG_LOG, TAG_POSITION, TAG_TOMB,
};
use crate::lww_apply::{decode_pair, encode_head, LwwMergeRequest, LwwRemoteRequest};
use crate::storage::Storage;

/// Most bytes of log entries one `lww_log_read` returns (at least one entry is returned).
const READ_BYTES: usize = 4 << 20;

impl Storage {
    /// This node's id, as the versions of its LWW commits carry it.
    pub fn lww_node(&self) -> NodeId {
        u64::from(self.inner.opts.node_id)
    }

    /// Ids of the lww tables in the current catalog.
    pub fn lww_tables(&self) -> Vec<TableId> {
        self.catalog()
            .tables()
            .filter(|t| t.consistency == Consistency::Lww)
            .map(|t| t.id)
            .collect()
    }

    /// Up to `max` entries of this node's origin log after seq `after`, or `Purged` if some of
    /// them are gone.
    pub fn lww_log_read(&self, after: u64, max: usize) -> Result<LogRead> {
        let head = self.lww_head();
        let (oldest, _) = self.lww_log_bounds()?;
        if after + 1 < oldest && after < head {
            return Ok(LogRead::Purged { oldest, head });
        }
        let engine = &self.inner.engine;
        let cf = engine.cf(CF_LWW)?;
        let mut entries = Vec::new();
        let mut bytes = 0;
        let start = log_key(after.saturating_add(1));
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(log_key(head.saturating_add(1)).to_vec());
        let it =
            engine
                .db
                .iterator_cf_opt(&cf, opts, IteratorMode::From(&start, Direction::Forward));
        for item in it {
            let (_, v) = item.map_err(engine_err)?;
            bytes += v.len();
            entries.push(LwwEntry::decode(&v)?);
            if entries.len() >= max || bytes >= READ_BYTES {
                break;
            }
        }
        Ok(LogRead::Entries { entries, head })
    }

    /// Last seq of this node's origin log (its entries up to it are durable).
    pub fn lww_head(&self) -> u64 {
        *self.inner.lww_head.borrow()
    }

    /// Waits until this node's origin log goes past `after`, at most `timeout`; returns the head.
    pub async fn lww_log_wait(&self, after: u64, timeout: Duration) -> u64 {
        let mut rx = self.inner.lww_head.clone();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|h| *h > after)).await;
        let head = *rx.borrow();
        head
    }

    /// `(oldest seq still kept, head)` of this node's origin log; `oldest == head + 1` when
    /// every entry was purged.
    pub fn lww_log_bounds(&self) -> Result<(u64, u64)> {
        let head = self.lww_head();
        // Kept in memory: seeking to the log's start steps over every purged entry still in the
        // memtable, which made each peer's pull cost more the longer a node ran.
        let known = self.inner.lww_oldest.load(Ordering::Acquire);
        if known != u64::MAX {
            return Ok((known.min(head + 1), head));
        }
        let engine = &self.inner.engine;
        let cf = engine.cf(CF_LWW)?;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(vec![TAG_LOG + 1]);
        let mut it = engine.db.raw_iterator_cf_opt(&cf, opts);
        it.seek([TAG_LOG]);
        let oldest = match it.key() {
            Some(k) if it.valid() => layout::decode_u64(&k[1..])?,
            _ => head + 1,
        };
        it.status().map_err(engine_err)?;
        // Only the first reader fills it in; a purge meanwhile has stored a later value.
        let _ = self.inner.lww_oldest.compare_exchange(
            u64::MAX,
            oldest,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        Ok((oldest.min(head + 1), head))
    }

    /// Deletes the entries of this node's origin log up to seq `upto` (never the head's
    /// successors). Peers that still needed them get a full sync.
    pub fn lww_log_purge(&self, upto: u64) -> Result<()> {
        let upto = upto.min(self.lww_head());
        let (oldest, _) = self.lww_log_bounds()?;
        if upto < oldest {
            return Ok(());
        }
        let engine = &self.inner.engine;
        let cf = engine.cf(CF_LWW)?;
        engine
            .db
            .delete_range_cf(&cf, log_key(0), log_key(upto.saturating_add(1)))
            .map_err(engine_err)?;
        self.inner
            .lww_oldest
            .fetch_max(upto.saturating_add(1), Ordering::AcqRel);
        Ok(())
    }

    /// `origin → (seq, ts)` of the last entry applied from each origin's log.
    pub fn lww_positions(&self) -> Result<BTreeMap<NodeId, (u64, u64)>> {
        let engine = &self.inner.engine;
        let cf = engine.cf(CF_LWW)?;
        let mut out = BTreeMap::new();
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(vec![TAG_POSITION + 1]);
        let it = engine.db.iterator_cf_opt(
            &cf,
            opts,
            IteratorMode::From(&[TAG_POSITION], Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(engine_err)?;
            out.insert(layout::decode_u64(&k[1..])?, decode_pair(&v)?);
        }
        Ok(out)
    }

    /// Applies entries of `origin`'s log (in order; entries at or before the recorded position
    /// are skipped, so a resent batch is harmless). Returns how many were applied: fewer than
    /// given when an entry needs a catalog this node has not applied yet. Refuses all of them
    /// with `ClockAhead` if any is more than `max_offset` ahead of this node's clock.
    pub async fn lww_apply(
        &self,
        origin: NodeId,
        entries: Vec<LwwEntry>,
        max_offset: Duration,
    ) -> Result<usize> {
        let (reply, rx) = oneshot::channel();
        let req = LwwRemoteRequest {
            origin,
            entries,
            max_offset_ms: max_offset.as_millis() as u64,
            reply,
        };
        self.inner
            .commit_tx
            .send(Msg::LwwRemote(Box::new(req)))
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// After a full sync from `origin` that covered its log up to `seq` (whose last timestamp
    /// was `ts`): later entries are applied from there. Never moves a position back.
    pub async fn lww_set_position(&self, origin: NodeId, seq: u64, ts: u64) -> Result<()> {
        // On the committer thread: an apply for the same origin cannot interleave with it.
        self.on_committer(move |engine| set_position(engine, origin, seq, ts))
            .await
    }

    /// Sum of the row digests of an lww table in each of `SYNC_BUCKETS` hash buckets.
    pub fn lww_bucket_checksums(&self, table: TableId) -> Result<Vec<u64>> {
        let mut sums = vec![0u64; SYNC_BUCKETS as usize];
        self.walk_lww_rows(table, |key, state| {
            let b = bucket_of(key) as usize;
            sums[b] = sums[b].wrapping_add(state.digest(key));
            Ok(())
        })?;
        Ok(sums)
    }

    /// Every row state (deleted rows included) of an lww table in the given buckets.
    pub fn lww_bucket_rows(
        &self,
        table: TableId,
        buckets: &[u32],
    ) -> Result<Vec<(Vec<u8>, RowState)>> {
        let mut out = Vec::new();
        self.walk_lww_rows(table, |key, state| {
            if buckets.contains(&bucket_of(key)) {
                out.push((key.to_vec(), state));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Merges row states received by a full sync of `table`; its live queries are told to
    /// re-read (a `Truncate` change record, pushed as `{"op":"reset"}`).
    pub async fn lww_merge_rows(
        &self,
        table: TableId,
        rows: Vec<(Vec<u8>, RowState)>,
    ) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        let req = LwwMergeRequest { table, rows, reply };
        self.inner
            .commit_tx
            .send(Msg::LwwMerge(Box::new(req)))
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// An order-independent digest of a table's contents: for an lww table the keys, cells and
    /// their versions of every visible row; for a raft table the keys and rows. Equal on every
    /// node once they hold the same data.
    pub fn table_checksum(&self, table: TableId) -> Result<u64> {
        let catalog = self.catalog();
        let def = catalog
            .table_by_id(table)
            .ok_or_else(|| Error::InvalidArgument(format!("no table with id {table}")))?;
        let mut sum = 0u64;
        if def.consistency == Consistency::Lww {
            self.walk_lww_rows(table, |key, state| {
                sum = sum.wrapping_add(state.digest(key));
                Ok(())
            })?;
            return Ok(sum);
        }
        self.walk_prefix(CF_DATA, &layout::index_prefix(table, 0), |k, v| {
            if let (_, Some(payload)) = layout::decode_value(v)? {
                let mut bytes = (k.len() as u64).to_be_bytes().to_vec();
                bytes.extend_from_slice(k);
                bytes.extend_from_slice(payload);
                sum = sum.wrapping_add(twox_hash::XxHash64::oneshot(0, &bytes));
            }
            Ok(())
        })?;
        Ok(sum)
    }

    /// Commits an empty entry to this node's origin log: peers that apply it learn that this
    /// node has sent everything older than its timestamp (tombstone purge needs that of every
    /// node, also of an idle one).
    pub async fn lww_tick(&self) -> Result<()> {
        crate::committer::submit_lww(self.inner.commit_path(), Vec::new(), Vec::new(), 0)
            .await
            .map(|_| ())
    }

    /// Timestamp of this node's last LWW commit (0: none yet).
    pub fn lww_last_ts(&self) -> u64 {
        self.inner.lww_ts.load(Ordering::Acquire)
    }

    /// Forgets deleted rows whose tombstone is older than `before_ts` — the caller's promise
    /// that every node has applied every write older than that. Returns how many. Runs on the
    /// committer thread, so no merge can slip in between the check and the delete.
    pub async fn lww_purge_tombstones(&self, before_ts: u64) -> Result<u64> {
        self.on_committer(move |engine| purge_tombstones(engine, before_ts))
            .await
    }

    /// Test hook (`weft_fault('clock_skew', …)`): this node's LWW commits take timestamps
    /// `ms` milliseconds ahead of its clock.
    pub fn set_clock_skew(&self, ms: i64) {
        self.inner.skew_ms.store(ms, Ordering::Relaxed);
    }

    /// Runs `f` on the committer thread, between commit groups, and returns what it returns.
    async fn on_committer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::engine::Engine) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        let job = move |c: &mut crate::committer::Committer| {
            let _ = reply.send(f(&c.engine));
        };
        self.inner
            .commit_tx
            .send(Msg::Run(Box::new(job)))
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    fn walk_lww_rows(
        &self,
        table: TableId,
        mut f: impl FnMut(&[u8], RowState) -> Result<()>,
    ) -> Result<()> {
        let prefix = row_state_key(&layout::table_prefix(table));
        self.walk_prefix(CF_LWW, &prefix, |k, v| f(&k[1..], RowState::decode(v)?))
    }

    /// Calls `f` with every key and value of column family `cf` that starts with `prefix`.
    fn walk_prefix(
        &self,
        cf: &str,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let engine = &self.inner.engine;
        let cf = engine.cf(cf)?;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(layout::prefix_end(prefix).unwrap_or_default());
        let mut it = engine.db.raw_iterator_cf_opt(&cf, opts);
        it.seek(prefix);
        while it.valid() {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                f(k, v)?;
            }
            it.next();
        }
        it.status().map_err(engine_err)
    }
}

fn purge_tombstones(engine: &crate::engine::Engine, before_ts: u64) -> Result<u64> {
    let cf = engine.cf(CF_LWW)?;
    let mut bound = vec![TAG_TOMB];
    bound.extend_from_slice(&before_ts.to_be_bytes());
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(bound.clone());
    let mut it = engine.db.raw_iterator_cf_opt(&cf, opts);
    it.seek([TAG_TOMB]);
    let mut candidates = Vec::new();
    while it.valid() {
        if let Some(k) = it.key() {
            candidates.push(k[9..].to_vec());
        }
        it.next();
    }
    it.status().map_err(engine_err)?;
    drop(it);
    let mut purged = 0;
    let mut batch = WriteBatch::default();
    for key in &candidates {
        // A row written again since is live, or deleted later (with a newer queue entry): keep.
        if let Some(b) = engine
            .db
            .get_cf(&cf, row_state_key(key))
            .map_err(engine_err)?
        {
            let state = RowState::decode(&b)?;
            if !state.is_live() && state.tomb.ts < before_ts {
                batch.delete_cf(&cf, row_state_key(key));
                purged += 1;
            }
        }
    }
    batch.delete_range_cf(&cf, &[TAG_TOMB][..], &bound[..]);
    engine.db.write(batch).map_err(engine_err)?;
    Ok(purged)
}

fn set_position(engine: &crate::engine::Engine, origin: NodeId, seq: u64, ts: u64) -> Result<()> {
    let cf = engine.cf(CF_LWW)?;
    let current = match engine
        .db
        .get_cf(&cf, position_key(origin))
        .map_err(engine_err)?
    {
        Some(b) => decode_pair(&b)?,
        None => (0, 0),
    };
    if seq <= current.0 {
        return Ok(());
    }
    engine
        .db
        .put_cf(
            &cf,
            position_key(origin),
            encode_head(seq, ts.max(current.1)),
        )
        .map_err(engine_err)
}
