//! Catalogs with fixed rows: namespaces, access methods, collations, tablespaces.

use super::model::Model;
use super::oids::*;
use super::table::{Col, Row, TableDef};
use crate::pg_row;

pub const PG_NAMESPACE: TableDef = TableDef {
    name: "pg_namespace",
    columns: &[
        ("oid", Col::Oid),
        ("nspname", Col::Name),
        ("nspowner", Col::Oid),
        ("nspacl", Col::TextArray),
    ],
    rows: namespaces,
};

/// pg_database_owner, the owner of `public` since PostgreSQL 15.
pub const DATABASE_OWNER_ROLE: u32 = 6171;

fn namespaces(_: &Model) -> Vec<Row> {
    vec![
        pg_row![
            PG_CATALOG_NAMESPACE,
            "pg_catalog",
            SUPERUSER_ROLE,
            None::<String>
        ],
        pg_row![
            PUBLIC_NAMESPACE,
            "public",
            DATABASE_OWNER_ROLE,
            None::<String>
        ],
        pg_row![
            PG_TOAST_NAMESPACE,
            "pg_toast",
            SUPERUSER_ROLE,
            None::<String>
        ],
        pg_row![
            INFORMATION_SCHEMA_NAMESPACE,
            "information_schema",
            SUPERUSER_ROLE,
            None::<String>
        ],
    ]
}

/// Comments (COMMENT ON) on relations and their columns.
pub const PG_DESCRIPTION: TableDef = TableDef {
    name: "pg_description",
    columns: &[
        ("objoid", Col::Oid),
        ("classoid", Col::Oid),
        ("objsubid", Col::Int4),
        ("description", Col::Text),
    ],
    rows: descriptions,
};

/// pg_class's own oid: the `classoid` of a relation's comment.
pub const PG_CLASS_OID: u32 = 1259;

fn descriptions(m: &Model) -> Vec<Row> {
    m.comments
        .iter()
        .map(|((oid, sub), text)| pg_row![*oid, PG_CLASS_OID, *sub, text.clone()])
        .collect()
}

/// Dependencies between objects; Weft lists those a client reads: a sequence on the column it
/// feeds (psql's `\d sequence` shows "Owned by" from it).
pub const PG_DEPEND: TableDef = TableDef {
    name: "pg_depend",
    columns: &[
        ("classid", Col::Oid),
        ("objid", Col::Oid),
        ("objsubid", Col::Int4),
        ("refclassid", Col::Oid),
        ("refobjid", Col::Oid),
        ("refobjsubid", Col::Int4),
        ("deptype", Col::Char),
    ],
    rows: dependencies,
};

fn dependencies(m: &Model) -> Vec<Row> {
    m.owned_sequences
        .iter()
        .map(|&(seq, table, num, kind)| {
            pg_row![
                PG_CLASS_OID,
                seq,
                0i32,
                PG_CLASS_OID,
                table,
                i32::from(num),
                kind
            ]
        })
        .collect()
}

pub const PG_AM: TableDef = TableDef {
    name: "pg_am",
    columns: &[
        ("oid", Col::Oid),
        ("amname", Col::Name),
        ("amhandler", Col::Text),
        ("amtype", Col::Char),
    ],
    rows: access_methods,
};

fn access_methods(_: &Model) -> Vec<Row> {
    vec![
        pg_row![HEAP_AM, "heap", "heap_tableam_handler", 't'],
        pg_row![BTREE_AM, "btree", "bthandler", 'i'],
        pg_row![HASH_AM, "hash", "hashhandler", 'i'],
    ]
}

pub const PG_COLLATION: TableDef = TableDef {
    name: "pg_collation",
    columns: &[
        ("oid", Col::Oid),
        ("collname", Col::Name),
        ("collnamespace", Col::Oid),
        ("collowner", Col::Oid),
        ("collprovider", Col::Char),
        ("collisdeterministic", Col::Bool),
        ("collencoding", Col::Int4),
        ("collcollate", Col::Text),
        ("collctype", Col::Text),
        ("colliculocale", Col::Text),
        ("collversion", Col::Text),
    ],
    rows: collations,
};

fn collations(_: &Model) -> Vec<Row> {
    let row = |oid: u32, name: &str, provider: char, locale: Option<&str>| {
        pg_row![
            oid,
            name,
            PG_CATALOG_NAMESPACE,
            SUPERUSER_ROLE,
            provider,
            true,
            -1i32,
            locale,
            locale,
            None::<String>,
            None::<String>
        ]
    };
    vec![
        row(DEFAULT_COLLATION, "default", 'd', None),
        row(C_COLLATION, "C", 'c', Some("C")),
        row(POSIX_COLLATION, "POSIX", 'c', Some("POSIX")),
    ]
}

pub const PG_TABLESPACE: TableDef = TableDef {
    name: "pg_tablespace",
    columns: &[
        ("oid", Col::Oid),
        ("spcname", Col::Name),
        ("spcowner", Col::Oid),
        ("spcacl", Col::TextArray),
        ("spcoptions", Col::TextArray),
    ],
    rows: tablespaces,
};

fn tablespaces(_: &Model) -> Vec<Row> {
    vec![
        pg_row![
            DEFAULT_TABLESPACE,
            "pg_default",
            SUPERUSER_ROLE,
            None::<String>,
            None::<String>
        ],
        pg_row![
            GLOBAL_TABLESPACE,
            "pg_global",
            SUPERUSER_ROLE,
            None::<String>,
            None::<String>
        ],
    ]
}
