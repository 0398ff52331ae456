//! Definitions as text, the way `pg_get_indexdef`, `pg_get_constraintdef` and `pg_get_viewdef`
//! print them; pg_indexes and information_schema reuse them.

use super::model::{Index, Model, Relation};

/// Reserved words that must be quoted as identifiers (the common ones).
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

/// PostgreSQL's `quote_ident`: quotes a name unless it is a plain lower-case identifier.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn column_list(m: &Model, table: u32, keys: &[i16]) -> String {
    keys.iter()
        .map(|k| {
            m.attribute(table, *k)
                .map_or_else(|| "?".to_string(), |a| quote_ident(&a.name))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn index_of(m: &Model, oid: u32) -> Option<(&Relation, &super::model::Index)> {
    let r = m.relation(oid)?;
    Some((r, r.index.as_ref()?))
}

/// `pg_get_indexdef(oid, column, pretty)`: the CREATE INDEX statement, or with `column > 0`
/// that key column's name.
pub fn index_def(m: &Model, oid: u32, column: i32, pretty: bool) -> Option<String> {
    let (r, ix) = index_of(m, oid)?;
    if column > 0 {
        let i = usize::try_from(column - 1).ok()?;
        if let Some(Some(e)) = ix.exprs.get(i) {
            return Some(e.clone());
        }
        let key = ix.keys.get(i)?;
        return m
            .attribute(ix.table_oid, *key)
            .map(|a| quote_ident(&a.name));
    }
    let table = m.relation(ix.table_oid)?;
    // Pretty output leaves out the schema of a table on the search path, as PostgreSQL does.
    let schema = if pretty { "" } else { "public." };
    let predicate = predicate_sql(ix, pretty)
        .map(|p| format!(" WHERE {p}"))
        .unwrap_or_default();
    Some(format!(
        "CREATE {}INDEX {} ON {schema}{} USING btree ({}){predicate}",
        if ix.unique { "UNIQUE " } else { "" },
        quote_ident(&r.name),
        quote_ident(&table.name),
        ix.keys
            .iter()
            .enumerate()
            .map(|(i, k)| match ix.exprs.get(i) {
                Some(Some(e)) => e.clone(),
                _ => column_list(m, ix.table_oid, std::slice::from_ref(k)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// A partial index's condition, as pg_get_indexdef writes it after WHERE: `((deleted_at IS NOT
/// NULL) AND active)`, pretty `deleted_at IS NOT NULL AND active`; None for an index of every row.
pub fn predicate_sql(ix: &Index, pretty: bool) -> Option<String> {
    let parts: Vec<&str> = ix
        .predicate
        .iter()
        .map(|(bare, wrapped)| {
            if pretty {
                bare.as_str()
            } else {
                wrapped.as_str()
            }
        })
        .collect();
    match parts.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        _ if pretty => Some(parts.join(" AND ")),
        _ => Some(format!("({})", parts.join(" AND "))),
    }
}

/// `pg_get_constraintdef(oid, pretty)`.
/// Pretty output shows a check's expression as written; plain output parenthesizes it again, as
/// PostgreSQL's deparser does.
pub fn constraint_def(m: &Model, oid: u32, pretty: bool) -> Option<String> {
    let c = m.constraint(oid)?;
    Some(match c.kind {
        'p' => format!("PRIMARY KEY ({})", column_list(m, c.table_oid, &c.keys)),
        'u' => format!("UNIQUE ({})", column_list(m, c.table_oid, &c.keys)),
        'f' => {
            let f = c.foreign.as_ref()?;
            let parent = m.relation(f.table_oid)?;
            let mut def = format!(
                "FOREIGN KEY ({}) REFERENCES {}({})",
                column_list(m, c.table_oid, &c.keys),
                quote_ident(&parent.name),
                column_list(m, f.table_oid, &f.keys)
            );
            for (label, letter) in [("UPDATE", f.on_update), ("DELETE", f.on_delete)] {
                let action = match letter {
                    'r' => "RESTRICT",
                    'c' => "CASCADE",
                    'n' => "SET NULL",
                    'd' => "SET DEFAULT",
                    _ => continue,
                };
                def.push_str(&format!(" ON {label} {action}"));
            }
            if f.deferred {
                def.push_str(" DEFERRABLE INITIALLY DEFERRED");
            } else if f.deferrable {
                def.push_str(" DEFERRABLE");
            }
            def
        }
        _ => {
            let expr = c.check.as_deref().unwrap_or("true");
            if pretty {
                format!("CHECK ({expr})")
            } else {
                format!("CHECK (({expr}))")
            }
        }
    })
}

/// `pg_get_viewdef(oid)`: the view's query as it was written, with PostgreSQL's leading space
/// and trailing semicolon.
pub fn view_def(m: &Model, oid: u32) -> Option<String> {
    let sql = m.relation(oid)?.view_sql.as_deref()?;
    Some(format!(" {};", sql.trim().trim_end_matches(';')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_ident_quotes_only_when_needed() {
        assert_eq!(quote_ident("abc_1"), "abc_1");
        assert_eq!(quote_ident("Abc"), "\"Abc\"");
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("1a"), "\"1a\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
