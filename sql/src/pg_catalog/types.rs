//! The built-in types pg_type lists, and their SQL spellings (`format_type`, `::regtype`,
//! `information_schema.columns.data_type`).

use weft_storage::DataType;

use crate::pgtype::PgType;

/// One row of pg_type.
#[derive(Debug, Clone, Copy)]
pub struct TypeInfo {
    pub oid: u32,
    pub name: &'static str,
    /// typlen: fixed size, -1 varlena, -2 C string.
    pub len: i16,
    pub category: char,
    /// The array type of this type (0 if none), or for an array type its element (`elem`).
    pub array: u32,
    pub elem: u32,
    pub align: char,
    pub storage: char,
    pub collatable: bool,
    pub preferred: bool,
    /// The SQL spelling `format_type` uses.
    pub sql_name: &'static str,
    /// `typtype`: b base, p pseudo.
    pub kind: char,
}

const fn t(
    oid: u32,
    name: &'static str,
    len: i16,
    category: char,
    array: u32,
    sql_name: &'static str,
) -> TypeInfo {
    let align = match len {
        1 | 64 => 'c',
        2 => 's',
        8 | 16 => 'd',
        _ => 'i',
    };
    TypeInfo {
        oid,
        name,
        len,
        category,
        array,
        elem: 0,
        align,
        storage: if len > 0 { 'p' } else { 'x' },
        collatable: false,
        preferred: false,
        sql_name,
        kind: 'b',
    }
}

const fn collatable(mut ti: TypeInfo) -> TypeInfo {
    ti.collatable = true;
    ti
}

const fn preferred(mut ti: TypeInfo) -> TypeInfo {
    ti.preferred = true;
    ti
}

const fn aligned(mut ti: TypeInfo, align: char, storage: char) -> TypeInfo {
    ti.align = align;
    ti.storage = storage;
    ti
}

const fn pseudo(mut ti: TypeInfo) -> TypeInfo {
    ti.kind = 'p';
    ti
}

const fn array(
    oid: u32,
    name: &'static str,
    elem: u32,
    align: char,
    sql_name: &'static str,
) -> TypeInfo {
    TypeInfo {
        oid,
        name,
        len: -1,
        category: 'A',
        array: 0,
        elem,
        align,
        storage: 'x',
        collatable: false,
        preferred: false,
        sql_name,
        kind: 'b',
    }
}

/// Every type pg_type shows, base types first.
pub const TYPES: &[TypeInfo] = &[
    preferred(t(16, "bool", 1, 'B', 1000, "boolean")),
    t(17, "bytea", -1, 'U', 1001, "bytea"),
    collatable(t(18, "char", 1, 'Z', 1002, "\"char\"")),
    collatable(t(19, "name", 64, 'S', 1003, "name")),
    t(20, "int8", 8, 'N', 1016, "bigint"),
    t(21, "int2", 2, 'N', 1005, "smallint"),
    t(22, "int2vector", -1, 'A', 1006, "int2vector"),
    t(23, "int4", 4, 'N', 1007, "integer"),
    t(24, "regproc", 4, 'N', 1008, "regproc"),
    preferred(collatable(t(25, "text", -1, 'S', 1009, "text"))),
    preferred(t(26, "oid", 4, 'N', 1028, "oid")),
    t(30, "oidvector", -1, 'A', 1013, "oidvector"),
    t(114, "json", -1, 'U', 199, "json"),
    t(194, "pg_node_tree", -1, 'Z', 0, "pg_node_tree"),
    t(700, "float4", 4, 'N', 1021, "real"),
    preferred(t(701, "float8", 8, 'N', 1022, "double precision")),
    pseudo(t(705, "unknown", -2, 'X', 0, "unknown")),
    t(1033, "aclitem", 12, 'U', 1034, "aclitem"),
    collatable(t(1042, "bpchar", -1, 'S', 1014, "character")),
    collatable(t(1043, "varchar", -1, 'S', 1015, "character varying")),
    t(1082, "date", 4, 'D', 1182, "date"),
    t(1083, "time", 8, 'D', 1183, "time without time zone"),
    t(
        1114,
        "timestamp",
        8,
        'D',
        1115,
        "timestamp without time zone",
    ),
    preferred(t(
        1184,
        "timestamptz",
        8,
        'D',
        1185,
        "timestamp with time zone",
    )),
    preferred(t(1186, "interval", 16, 'T', 1187, "interval")),
    aligned(t(1700, "numeric", -1, 'N', 1231, "numeric"), 'i', 'm'),
    t(2205, "regclass", 4, 'N', 2210, "regclass"),
    t(2206, "regtype", 4, 'N', 2211, "regtype"),
    t(4089, "regnamespace", 4, 'N', 4090, "regnamespace"),
    pseudo(t(2249, "record", -1, 'P', 2287, "record")),
    pseudo(t(2275, "cstring", -2, 'P', 1263, "cstring")),
    pseudo(t(2276, "any", 4, 'P', 0, "\"any\"")),
    pseudo(t(2277, "anyarray", -1, 'P', 0, "anyarray")),
    pseudo(t(2278, "void", 4, 'P', 0, "void")),
    aligned(t(2950, "uuid", 16, 'U', 2951, "uuid"), 'c', 'p'),
    t(3802, "jsonb", -1, 'U', 3807, "jsonb"),
    array(1000, "_bool", 16, 'c', "boolean[]"),
    array(1001, "_bytea", 17, 'i', "bytea[]"),
    array(1002, "_char", 18, 'c', "\"char\"[]"),
    array(1003, "_name", 19, 'c', "name[]"),
    array(1005, "_int2", 21, 's', "smallint[]"),
    array(1006, "_int2vector", 22, 'i', "int2vector[]"),
    array(1007, "_int4", 23, 'i', "integer[]"),
    array(1008, "_regproc", 24, 'i', "regproc[]"),
    array(1009, "_text", 25, 'i', "text[]"),
    array(1013, "_oidvector", 30, 'i', "oidvector[]"),
    array(1014, "_bpchar", 1042, 'i', "character[]"),
    array(1015, "_varchar", 1043, 'i', "character varying[]"),
    array(1016, "_int8", 20, 'd', "bigint[]"),
    array(1021, "_float4", 700, 'i', "real[]"),
    array(1022, "_float8", 701, 'd', "double precision[]"),
    array(1028, "_oid", 26, 'i', "oid[]"),
    array(1034, "_aclitem", 1033, 'i', "aclitem[]"),
    array(
        1115,
        "_timestamp",
        1114,
        'd',
        "timestamp without time zone[]",
    ),
    array(1182, "_date", 1082, 'i', "date[]"),
    array(1183, "_time", 1083, 'd', "time without time zone[]"),
    array(
        1185,
        "_timestamptz",
        1184,
        'd',
        "timestamp with time zone[]",
    ),
    array(1187, "_interval", 1186, 'd', "interval[]"),
    array(1231, "_numeric", 1700, 'i', "numeric[]"),
    array(1263, "_cstring", 2275, 'i', "cstring[]"),
    array(199, "_json", 114, 'i', "json[]"),
    array(2210, "_regclass", 2205, 'i', "regclass[]"),
    array(2211, "_regtype", 2206, 'i', "regtype[]"),
    array(2287, "_record", 2249, 'd', "record[]"),
    array(2951, "_uuid", 2950, 'c', "uuid[]"),
    array(3807, "_jsonb", 3802, 'i', "jsonb[]"),
    array(4090, "_regnamespace", 4089, 'i', "regnamespace[]"),
];

pub fn by_oid(oid: u32) -> Option<&'static TypeInfo> {
    TYPES.iter().find(|t| t.oid == oid)
}

/// A type by the name a cast or `'...'::regtype` may use: `int4`, `integer`, `pg_catalog.text`,
/// `character varying`, `int[]`.
pub fn by_name(name: &str) -> Option<&'static TypeInfo> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    if name == "\"char\"" {
        return by_oid(18);
    }
    let name = name.trim_matches('"');
    if let Some(elem) = name.strip_suffix("[]") {
        let e = by_name(elem)?;
        return by_oid(e.array);
    }
    let alias = match name {
        "int" | "integer" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" | "float" => "float8",
        "boolean" => "bool",
        "character varying" => "varchar",
        "character" | "char" => "bpchar",
        "decimal" => "numeric",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        other => other,
    };
    TYPES
        .iter()
        .find(|t| t.name == alias || t.sql_name == alias)
}

/// PostgreSQL's `format_type(oid, typmod)`.
pub fn format_type(oid: u32, typmod: Option<i32>) -> String {
    let Some(ti) = by_oid(oid) else {
        return "???".to_string();
    };
    let typmod = typmod.filter(|m| *m >= 0);
    if ti.category == 'A' && ti.elem != 0 && typmod.is_some() {
        // An array's modifier is its element's: `character varying(3)[]`.
        return format!("{}[]", format_type(ti.elem, typmod));
    }
    match (ti.oid, typmod) {
        (1043 | 1042, Some(m)) if m >= 4 => format!("{}({})", ti.sql_name, m - 4),
        (1700, Some(m)) if m >= 4 => {
            let m = m - 4;
            format!("numeric({},{})", (m >> 16) & 0xffff, m & 0xffff)
        }
        (1083 | 1114 | 1184, Some(m)) => {
            let (base, zone) = ti.sql_name.split_once(' ').unwrap_or((ti.sql_name, ""));
            format!("{base}({m}) {zone}")
        }
        _ => ti.sql_name.to_string(),
    }
}

/// The type oid of a stored column.
pub fn storage_type_oid(t: DataType) -> u32 {
    PgType::from_storage(t).oid()
}

/// `information_schema.columns.data_type`: the SQL name without modifiers (arrays are `ARRAY`).
pub fn information_schema_name(oid: u32) -> String {
    match by_oid(oid) {
        Some(ti) if ti.category == 'A' && ti.elem != 0 => "ARRAY".to_string(),
        Some(ti) if ti.kind == 'p' => ti.sql_name.to_string(),
        Some(ti) if ti.oid == 18 => "\"char\"".to_string(),
        Some(ti) => ti.sql_name.to_string(),
        None => "USER-DEFINED".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pgtype_is_listed_with_its_name() {
        for t in PgType::ALL {
            let ti = by_oid(t.oid());
            assert_eq!(ti.map(|ti| ti.name), Some(t.name()), "{t:?}");
        }
    }

    #[test]
    fn arrays_point_at_their_elements() {
        for ti in TYPES.iter().filter(|t| t.array != 0) {
            assert_eq!(
                by_oid(ti.array).map(|a| a.elem),
                Some(ti.oid),
                "{}",
                ti.name
            );
        }
    }

    #[test]
    fn format_type_spells_modifiers() {
        assert_eq!(format_type(1043, Some(24)), "character varying(20)");
        assert_eq!(format_type(1043, None), "character varying");
        assert_eq!(format_type(1700, Some((10 << 16 | 2) + 4)), "numeric(10,2)");
        assert_eq!(format_type(23, Some(-1)), "integer");
        assert_eq!(format_type(1007, None), "integer[]");
        assert_eq!(format_type(1, None), "???");
        assert_eq!(by_name("pg_catalog.int4").map(|t| t.oid), Some(23));
        assert_eq!(by_name("character varying").map(|t| t.oid), Some(1043));
        assert_eq!(by_name("int[]").map(|t| t.oid), Some(1007));
    }
}
