//! The RocksDB instance: opening it with its column families and tuning, the directory lock, and
//! snapshots that own a reference to the database so a transaction can keep one.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, BoundColumnFamily, Cache, ColumnFamilyDescriptor, DBCompressionType,
    DBRawIteratorWithThreadMode, Options, ReadOptions, SnapshotWithThreadMode, DB,
};

use crate::catalog::{Catalog, CatalogEntry};
use crate::codec::layout::{self, CATALOG_TAG};
use crate::error::{engine, Error, Result};

pub const CF_DATA: &str = "data";
pub const CF_CHANGES: &str = "changes";
pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_META: &str = "raft_meta";
/// LWW row states, this node's LWW origin log, per-origin positions (`lww.rs`). Never part of a
/// Raft snapshot: it holds what this node committed or received outside Raft.
pub const CF_LWW: &str = "lww";

const LOCK_FILE: &str = "weft.lock";
const DB_DIR: &str = "db";
const BLOCK_CACHE_BYTES: usize = 256 << 20;

/// The open database. Field order matters: the database closes before the lock is released.
pub struct Engine {
    pub db: DB,
    _lock: File,
}

impl Engine {
    /// Creates `dir` if needed, takes its lock file, opens (or creates) the database under it.
    /// With `prewrite_wal`, the write-ahead log is first made a file already written on disk
    /// (`write_wal_ahead`): 48 MiB written and about 0.1 s at every open.
    pub fn open(dir: &Path, prewrite_wal: bool) -> Result<Engine> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, &e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, &e))?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&lock) {
            Ok(true) => {}
            Ok(false) => return Err(locked(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(locked(dir)),
            Err(e) => return Err(io_err(&lock_path, &e)),
        }

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_bytes_per_sync(1 << 20);
        db_opts.set_recycle_log_file_num(WAL_RECYCLE_FILES);

        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_DATA, data_cf_options(&cache)),
            ColumnFamilyDescriptor::new(CF_CHANGES, log_cf_options(&cache)),
            ColumnFamilyDescriptor::new(CF_RAFT_LOG, log_cf_options(&cache)),
            ColumnFamilyDescriptor::new(CF_RAFT_META, Options::default()),
            ColumnFamilyDescriptor::new(CF_LWW, data_cf_options(&cache)),
        ];
        let db_path = dir.join(DB_DIR);
        let db = DB::open_cf_descriptors(&db_opts, &db_path, cfs).map_err(engine)?;
        if prewrite_wal {
            // A write RocksDB cannot make (no space left) would stop the database's writes, so
            // the filler is only written with room to spare (twice its size).
            match fs4::available_space(&db_path) {
                Ok(free) if free >= 2 * WAL_AHEAD_BYTES as u64 => write_wal_ahead(&db, &db_path)?,
                Ok(free) => tracing::warn!(
                    free_bytes = free,
                    "little disk space: the write-ahead log is not written ahead"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot read the free disk space"),
            }
        }
        Ok(Engine { db, _lock: lock })
    }

    pub fn cf(&self, name: &str) -> Result<Arc<BoundColumnFamily<'_>>> {
        cf_of(&self.db, name)
    }

    /// Latest stored value of a `data` key (header included), outside any snapshot.
    pub fn get_latest(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cf = self.cf(CF_DATA)?;
        self.db.get_cf(&cf, key).map_err(engine)
    }
}

/// Obsolete WAL files RocksDB keeps to reuse as new ones (`recycle_log_file_num`).
const WAL_RECYCLE_FILES: usize = 4;
/// Bytes written ahead into the first WAL (`write_wal_ahead`): under the 64 MiB write buffer of
/// `raft_meta`, which would otherwise flush (and so switch the WAL) while the filler is written.
pub const WAL_AHEAD_BYTES: usize = 48 << 20;
/// The `raft_meta` key the filler is written to and deleted from.
const FILLER_KEY: &[u8] = b"\0wal-ahead";

/// Makes the write-ahead log a file whose blocks are already written, as PostgreSQL zero-fills
/// its WAL segments. An fdatasync after appending to a file that grows (or into blocks only
/// allocated) must also commit the file system's journal, which every process syncing on that
/// disk then waits for; one that only overwrote written blocks flushes the data alone. On this
/// project's test machine a 300-byte append + fdatasync took 127 µs against 114 µs alone, and
/// 244 µs against 212 µs with three processes syncing at once (BENCHMARKS.md, 8 Dec).
///
/// RocksDB reuses an obsolete WAL file in place (`recycle_log_file_num`), but only one it wrote
/// after this open. So: fill the current WAL; flush every column family, which starts a new WAL
/// and puts the filled one on the recycle list once it is obsolete; write one more record and
/// flush again: the WAL started then is the filled file, overwritten from its start. The filler
/// is one key, written and deleted, so the flushes write almost nothing. The flush's background
/// job may list the obsolete file only after the flush has returned, so the WAL in use is
/// checked, and switched again if it is not the filled one yet.
fn write_wal_ahead(db: &DB, db_path: &Path) -> Result<()> {
    let meta = cf_of(db, CF_RAFT_META)?;
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..WAL_AHEAD_BYTES / chunk.len() {
        db.put_cf(&meta, FILLER_KEY, &chunk).map_err(engine)?;
    }
    db.delete_cf(&meta, FILLER_KEY).map_err(engine)?;
    for name in [CF_DATA, CF_CHANGES, CF_RAFT_LOG, CF_RAFT_META, CF_LWW] {
        db.flush_cf(&cf_of(db, name)?).map_err(engine)?;
    }
    for attempt in 0..20 {
        // One record in the WAL in use, so that the flush switches to a new one.
        db.delete_cf(&meta, FILLER_KEY).map_err(engine)?;
        db.flush_cf(&meta).map_err(engine)?;
        if current_wal_size(db_path)? >= WAL_AHEAD_BYTES as u64 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(attempt.min(10)));
    }
    tracing::warn!("the write-ahead log could not be written ahead; commits sync a growing file");
    Ok(())
}

fn cf_of<'a>(db: &'a DB, name: &str) -> Result<Arc<BoundColumnFamily<'a>>> {
    db.cf_handle(name)
        .ok_or_else(|| Error::Engine(format!("column family {name} is missing")))
}

/// Size of the newest WAL file (`<number>.log`) in `db_path`.
fn current_wal_size(db_path: &Path) -> Result<u64> {
    let entries = std::fs::read_dir(db_path).map_err(|e| io_err(db_path, &e))?;
    let mut newest: Option<(u64, u64)> = None;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(db_path, &e))?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if newest.is_none_or(|(n, _)| number > n) {
            // An obsolete WAL may be deleted or renamed for reuse meanwhile (never the newest).
            let size = match entry.metadata() {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(db_path, &e)),
            };
            newest = Some((number, size));
        }
    }
    Ok(newest.map_or(0, |(_, size)| size))
}

/// Point lookups dominate (primary keys, unique checks), so a whole-key bloom filter in the
/// SST files and in the memtable lets misses skip the disk.
fn data_cf_options(cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    table.set_whole_key_filtering(true);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    let mut opts = Options::default();
    opts.set_block_based_table_factory(&table);
    opts.set_memtable_prefix_bloom_ratio(0.1);
    opts.set_memtable_whole_key_filtering(true);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_level_compaction_dynamic_level_bytes(true);
    opts
}

/// Append-only logs read sequentially: no bloom filter.
fn log_cf_options(cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    let mut opts = Options::default();
    opts.set_block_based_table_factory(&table);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts
}

fn locked(dir: &Path) -> Error {
    Error::Locked {
        path: dir.to_path_buf(),
    }
}

fn io_err(path: &Path, e: &std::io::Error) -> Error {
    Error::Io {
        path: PathBuf::from(path),
        message: e.to_string(),
    }
}

type Snap<'a> = SnapshotWithThreadMode<'a, DB>;

self_cell::self_cell!(
    /// A RocksDB snapshot that keeps its database alive.
    pub struct OwnedSnapshot {
        owner: Arc<Engine>,
        #[covariant]
        dependent: Snap,
    }
);

impl OwnedSnapshot {
    pub fn take(engine: Arc<Engine>) -> OwnedSnapshot {
        OwnedSnapshot::new(engine, |e| e.db.snapshot())
    }

    pub fn engine(&self) -> &Engine {
        self.borrow_owner()
    }

    /// Stored value (header included) of a `data` key as of the snapshot.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cf = self.engine().cf(CF_DATA)?;
        self.borrow_dependent()
            .get_cf_opt(&cf, key, ReadOptions::default())
            .map_err(engine)
    }

    /// Raw iterator over `data` keys in `[start, end)` as of the snapshot.
    pub fn with_iter<T>(
        &self,
        start: &[u8],
        end: &[u8],
        f: impl FnOnce(&mut DBRawIteratorWithThreadMode<'_, DB>) -> Result<T>,
    ) -> Result<T> {
        let cf = self.engine().cf(CF_DATA)?;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(end.to_vec());
        let mut it = self.borrow_dependent().raw_iterator_cf_opt(&cf, opts);
        it.seek(start);
        f(&mut it)
    }
}

/// Reads every live catalog entry visible to `it` (positioned anywhere; it is re-seeked).
pub fn load_catalog(it: &mut DBRawIteratorWithThreadMode<'_, DB>) -> Result<Catalog> {
    let mut catalog = Catalog::default();
    it.seek([CATALOG_TAG]);
    while it.valid() {
        let (Some(key), Some(stored)) = (it.key(), it.value()) else {
            break;
        };
        if key.first() != Some(&CATALOG_TAG) {
            break;
        }
        if let (_, Some(json)) = layout::decode_value(stored)? {
            let entry: CatalogEntry = serde_json::from_slice(json)
                .map_err(|e| Error::Corruption(format!("catalog entry: {e}")))?;
            catalog.entries.insert(entry.id(), entry);
        }
        it.next();
    }
    it.status().map_err(engine)?;
    Ok(catalog)
}

/// Catalog as of the snapshot.
pub fn load_catalog_at(snap: &OwnedSnapshot) -> Result<Catalog> {
    let start = [CATALOG_TAG];
    let end = [CATALOG_TAG + 1];
    snap.with_iter(&start, &end, load_catalog)
}

/// Latest committed catalog (used by the committer right after it writes DDL).
pub fn load_catalog_latest(engine: &Engine) -> Result<Catalog> {
    let cf = engine.cf(CF_DATA)?;
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(vec![CATALOG_TAG + 1]);
    let mut it = engine.db.raw_iterator_cf_opt(&cf, opts);
    load_catalog(&mut it)
}
