//! Catalogs of features Weft does not have: always empty, with PostgreSQL's columns so that the
//! queries psql and drivers send against them plan and return nothing.

use super::table::{no_rows, Col, TableDef};

const fn empty(name: &'static str, columns: &'static [(&'static str, Col)]) -> TableDef {
    TableDef {
        name,
        columns,
        rows: no_rows,
    }
}

pub const EMPTY: &[TableDef] = &[
    // Operator classes: an index's columns use their type's default one, which clients take
    // when none is listed (SQLAlchemy reads the non-default ones from here).
    empty(
        "pg_opclass",
        &[
            ("oid", Col::Oid),
            ("opcmethod", Col::Oid),
            ("opcname", Col::Name),
            ("opcnamespace", Col::Oid),
            ("opcowner", Col::Oid),
            ("opcfamily", Col::Oid),
            ("opcintype", Col::Oid),
            ("opcdefault", Col::Bool),
            ("opckeytype", Col::Oid),
        ],
    ),
    empty(
        "pg_shdescription",
        &[
            ("objoid", Col::Oid),
            ("classoid", Col::Oid),
            ("description", Col::Text),
        ],
    ),
    empty(
        "pg_inherits",
        &[
            ("inhrelid", Col::Oid),
            ("inhparent", Col::Oid),
            ("inhseqno", Col::Int4),
            ("inhdetachpending", Col::Bool),
        ],
    ),
    empty(
        "pg_policy",
        &[
            ("oid", Col::Oid),
            ("polname", Col::Name),
            ("polrelid", Col::Oid),
            ("polcmd", Col::Char),
            ("polpermissive", Col::Bool),
            ("polroles", Col::OidArray),
            ("polqual", Col::Text),
            ("polwithcheck", Col::Text),
        ],
    ),
    empty(
        "pg_trigger",
        &[
            ("oid", Col::Oid),
            ("tgrelid", Col::Oid),
            ("tgparentid", Col::Oid),
            ("tgname", Col::Name),
            ("tgfoid", Col::Oid),
            ("tgtype", Col::Int2),
            ("tgenabled", Col::Char),
            ("tgisinternal", Col::Bool),
            ("tgconstrrelid", Col::Oid),
            ("tgconstrindid", Col::Oid),
            ("tgconstraint", Col::Oid),
            ("tgdeferrable", Col::Bool),
            ("tginitdeferred", Col::Bool),
            ("tgnargs", Col::Int2),
            ("tgattr", Col::Int2Vector),
            ("tgargs", Col::Text),
            ("tgqual", Col::Text),
            ("tgoldtable", Col::Name),
            ("tgnewtable", Col::Name),
        ],
    ),
    empty(
        "pg_rewrite",
        &[
            ("oid", Col::Oid),
            ("rulename", Col::Name),
            ("ev_class", Col::Oid),
            ("ev_type", Col::Char),
            ("ev_enabled", Col::Char),
            ("is_instead", Col::Bool),
            ("ev_qual", Col::Text),
            ("ev_action", Col::Text),
        ],
    ),
    empty(
        "pg_publication",
        &[
            ("oid", Col::Oid),
            ("pubname", Col::Name),
            ("pubowner", Col::Oid),
            ("puballtables", Col::Bool),
            ("pubinsert", Col::Bool),
            ("pubupdate", Col::Bool),
            ("pubdelete", Col::Bool),
            ("pubtruncate", Col::Bool),
            ("pubviaroot", Col::Bool),
        ],
    ),
    empty(
        "pg_publication_rel",
        &[
            ("oid", Col::Oid),
            ("prpubid", Col::Oid),
            ("prrelid", Col::Oid),
            ("prqual", Col::Text),
            ("prattrs", Col::Int2Array),
        ],
    ),
    empty(
        "pg_publication_namespace",
        &[
            ("oid", Col::Oid),
            ("pnpubid", Col::Oid),
            ("pnnspid", Col::Oid),
        ],
    ),
    empty(
        "pg_statistic_ext",
        &[
            ("oid", Col::Oid),
            ("stxrelid", Col::Oid),
            ("stxname", Col::Name),
            ("stxnamespace", Col::Oid),
            ("stxowner", Col::Oid),
            ("stxstattarget", Col::Int4),
            ("stxkeys", Col::Int2Vector),
            ("stxkind", Col::CharArray),
            ("stxexprs", Col::Text),
        ],
    ),
    empty(
        "pg_partitioned_table",
        &[
            ("partrelid", Col::Oid),
            ("partstrat", Col::Char),
            ("partnatts", Col::Int2),
            ("partdefid", Col::Oid),
            ("partattrs", Col::Int2Vector),
            ("partclass", Col::OidVector),
            ("partcollation", Col::OidVector),
            ("partexprs", Col::Text),
        ],
    ),
    empty(
        "pg_extension",
        &[
            ("oid", Col::Oid),
            ("extname", Col::Name),
            ("extowner", Col::Oid),
            ("extnamespace", Col::Oid),
            ("extrelocatable", Col::Bool),
            ("extversion", Col::Text),
            ("extconfig", Col::OidArray),
            ("extcondition", Col::TextArray),
        ],
    ),
    empty(
        "pg_foreign_table",
        &[
            ("ftrelid", Col::Oid),
            ("ftserver", Col::Oid),
            ("ftoptions", Col::TextArray),
        ],
    ),
    empty(
        "pg_event_trigger",
        &[
            ("oid", Col::Oid),
            ("evtname", Col::Name),
            ("evtevent", Col::Name),
            ("evtowner", Col::Oid),
            ("evtfoid", Col::Oid),
            ("evtenabled", Col::Char),
            ("evttags", Col::TextArray),
        ],
    ),
    empty(
        "pg_matviews",
        &[
            ("schemaname", Col::Name),
            ("matviewname", Col::Name),
            ("matviewowner", Col::Name),
            ("tablespace", Col::Name),
            ("hasindexes", Col::Bool),
            ("ispopulated", Col::Bool),
            ("definition", Col::Text),
        ],
    ),
];

/// Whether a catalog table never has rows (a SELECT that inner-joins it returns nothing).
pub fn is_empty_table(name: &str) -> bool {
    EMPTY.iter().any(|t| t.name == name)
}
