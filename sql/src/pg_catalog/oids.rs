//! OIDs of catalog objects. Tables and views use their object id (from 16384, like PostgreSQL's
//! user objects); indexes, constraints and column defaults have no id of their own in storage, so
//! theirs are derived from the table's id in ranges above every object id: stable across
//! sessions and restarts, as clients that cache oids expect.
//!
//! ```text
//!   0 ..      16383   built-in (types, namespaces, roles, access methods, functions)
//!   16384 .. 2^29-1   tables and views (object ids)
//!   2^29 ..           constraints   2^29 + table·1024 + k  (k: 0 pkey, index id, 512 + check no.)
//!   2^30 ..           indexes       2^30 + table·1024 + index id (0: the primary key)
//!   2^30 + 2^29 ..    defaults      2^30 + 2^29 + table·1024 + attnum
//! ```

use weft_storage::TableId;

pub const PG_CATALOG_NAMESPACE: u32 = 11;
pub const PUBLIC_NAMESPACE: u32 = 2200;
/// PostgreSQL's oid varies by installation; this one is free in every release.
pub const INFORMATION_SCHEMA_NAMESPACE: u32 = 13000;
pub const PG_TOAST_NAMESPACE: u32 = 99;

/// The one role (the bootstrap superuser's oid in PostgreSQL).
pub const SUPERUSER_ROLE: u32 = 10;
pub const DATABASE: u32 = 5;
pub const DEFAULT_TABLESPACE: u32 = 1663;
pub const GLOBAL_TABLESPACE: u32 = 1664;

pub const HEAP_AM: u32 = 2;
pub const BTREE_AM: u32 = 403;
pub const HASH_AM: u32 = 405;

pub const DEFAULT_COLLATION: u32 = 100;
pub const C_COLLATION: u32 = 950;
pub const POSIX_COLLATION: u32 = 951;

/// Oids of the catalog tables themselves (`classoid` columns, `'pg_class'::regclass`).
pub const SYSTEM_RELATIONS: &[(&str, u32)] = &[
    ("pg_type", 1247),
    ("pg_attribute", 1249),
    ("pg_proc", 1255),
    ("pg_class", 1259),
    ("pg_attrdef", 2604),
    ("pg_constraint", 2606),
    ("pg_inherits", 2611),
    ("pg_index", 2610),
    ("pg_namespace", 2615),
    ("pg_am", 2601),
    ("pg_database", 1262),
    ("pg_authid", 1260),
    ("pg_description", 2609),
    ("pg_depend", 2608),
    ("pg_trigger", 2620),
    ("pg_rewrite", 2618),
    ("pg_collation", 3456),
    ("pg_tablespace", 1213),
    ("pg_extension", 3079),
    ("pg_policy", 3256),
    ("pg_statistic_ext", 3381),
    ("pg_publication", 6104),
    ("pg_enum", 3501),
    ("pg_range", 3541),
    ("pg_settings", 12000),
    ("pg_roles", 12001),
];

/// The oid of a built-in catalog relation by name.
pub fn system_relation(name: &str) -> Option<u32> {
    SYSTEM_RELATIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, o)| *o)
}

const CONSTRAINT_BASE: u32 = 1 << 29;
const INDEX_BASE: u32 = 1 << 30;
const DEFAULT_BASE: u32 = (1 << 30) + (1 << 29);
const PER_TABLE: u32 = 1024;
/// Check constraints count from here within a table's constraint range.
pub const CHECK_SLOT: u32 = 512;
/// Foreign keys count from here.
pub const FK_SLOT: u32 = 768;

fn derived(base: u32, table: TableId, k: u32) -> u32 {
    base.saturating_add(table.saturating_mul(PER_TABLE))
        .saturating_add(k % PER_TABLE)
}

/// An index's oid; index id 0 is the primary key.
pub fn index_oid(table: TableId, index_id: u32) -> u32 {
    derived(INDEX_BASE, table, index_id)
}

/// A constraint's oid: slot 0 is the primary key, a unique constraint uses its index id, and
/// check constraint n uses `CHECK_SLOT + n`.
pub fn constraint_oid(table: TableId, slot: u32) -> u32 {
    derived(CONSTRAINT_BASE, table, slot)
}

/// The oid of a column default (pg_attrdef).
pub fn default_oid(table: TableId, attnum: i16) -> u32 {
    derived(DEFAULT_BASE, table, u32::try_from(attnum).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_oids_stay_in_their_ranges() {
        // The largest table id whose derived oids stay in range.
        let last = (1u32 << 29) / PER_TABLE - 1;
        for table in [16384u32, 16385, 100_000, last] {
            for k in [0u32, 1, 511, CHECK_SLOT + 7] {
                assert!((CONSTRAINT_BASE..INDEX_BASE).contains(&constraint_oid(table, k)));
                assert!((INDEX_BASE..DEFAULT_BASE).contains(&index_oid(table, k)));
                assert!(default_oid(table, 1) >= DEFAULT_BASE && default_oid(table, 1) < u32::MAX);
            }
        }
        assert_ne!(index_oid(16384, 1), index_oid(16385, 1));
        assert_ne!(constraint_oid(16384, 0), constraint_oid(16384, CHECK_SLOT));
    }
}
