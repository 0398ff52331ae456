//! `ALTER TABLE t ALTER COLUMN c [SET DATA] TYPE type [USING expr]`: the column's stored type
//! changes, so every row is rewritten, as PostgreSQL rewrites the table.
//!
//! ```text
//!   checks: a conversion PostgreSQL makes without USING (else 42804 with its hint), foreign
//!     keys still between compatible types (42804), an identity column stays an integer
//!   SELECT <every column>, <USING expr or the column> FROM t   (the transaction's rows)
//!     --> each value converted as an assignment to the new type (22003, 22001, 22P02, …)
//!     --> NOT NULL and CHECK constraints of the table, as PostgreSQL words them for a rewrite
//!   Txn::rewrite_table: rows, keys and index entries encoded anew (23505 if two rows now
//!     collide); one Truncate change record, so live queries over t push a reset
//!   the new definition, then every foreign key on the column re-checked over the rows (23503)
//! ```

use datafusion::sql::sqlparser::ast;
use weft_storage::{CatalogEntry, Consistency, DataType, Row, TableDef, Txn};

use super::column_type;
use crate::convert::array_value;
use crate::dml::foreign::compatible;
use crate::error::{Error, ErrorObject, Result};
use crate::pgtype::sql_type_name;
use crate::session::ExecCtx;

pub(super) async fn retype(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    mut def: TableDef,
    pos: usize,
    data_type: &ast::DataType,
    using: Option<&ast::Expr>,
) -> Result<TableDef> {
    let to = column_type(data_type)?;
    let column = def.columns[pos].clone();
    if def.consistency == Consistency::Lww {
        return Err(Error::unsupported(
            "changing the type of a column of an lww table (each node holds its own rows)",
        ));
    }
    if using.is_none() && !assignable(column.data_type, to) {
        return Err(Error::Detailed {
            code: "42804",
            message: format!(
                "column \"{}\" cannot be cast automatically to type {}",
                column.name,
                sql_type_name(to)
            ),
            detail: None,
            hint: Some(format!(
                "You might need to specify \"USING {}::{}\".",
                ast::Ident::new(&column.name),
                sql_type_name(to)
            )),
            object: ErrorObject::default(),
        });
    }
    if column.identity.is_some()
        && !matches!(to, DataType::Int16 | DataType::Int32 | DataType::Int64)
    {
        return Err(Error::InvalidParameterValue {
            message: "identity column type must be smallint, integer, or bigint".into(),
        });
    }
    // An expression index's function must still take the column (`lower(text)`).
    let keyed = def.indexes.iter().find_map(|ix| {
        let i = ix.columns.iter().position(|&c| c == pos)?;
        ix.function(i)
    });
    if let Some(f) = keyed {
        if !matches!(
            to,
            DataType::Text | DataType::Varchar(_) | DataType::Char(_)
        ) {
            return Err(Error::UndefinedFunction {
                message: format!(
                    "function {}({}) does not exist",
                    f.name(),
                    crate::pgtype::sql_type_name(to)
                ),
            });
        }
    }
    // A partial index's condition on a boolean column needs it to stay boolean.
    let tested = def
        .indexes
        .iter()
        .flat_map(|ix| &ix.predicate)
        .any(|c| c.column() == pos && c.is_boolean());
    if tested && to != DataType::Bool {
        return Err(Error::DatatypeMismatch {
            message: format!(
                "argument of WHERE must be type boolean, not type {}",
                crate::pgtype::sql_type_name(to)
            ),
        });
    }
    let mut new_def = def.clone();
    new_def.columns[pos].data_type = to;
    let catalog = txn.catalog();
    let foreign = foreign_keys_on(&catalog, &new_def, column.id);
    for (child, fk) in &foreign {
        key_types_agree(&catalog, child, fk, &new_def)?;
    }

    // The rows, with the column's new value next to them.
    let expr = using.cloned().unwrap_or_else(|| {
        ast::Expr::CompoundIdentifier(vec![
            ast::Ident::with_quote('"', &def.name),
            ast::Ident::with_quote('"', &column.name),
        ])
    });
    ctx.shared.set_read(Some(crate::session::view_of(txn)));
    let batches = crate::dml::rows_with(ctx, &def, vec![expr]).await?;
    let n = def.columns.len();
    let mut rows: Vec<Row> = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            let mut row: Row = (0..n)
                .map(|c| array_value(b.column(c), r, def.columns[c].data_type))
                .collect::<Result<_>>()?;
            row[pos] = array_value(b.column(n), r, to)?;
            rows.push(row);
        }
    }
    crate::dml::constraints::check(ctx, &new_def, &rows).map_err(|e| match e {
        Error::NotNullViolation { object, .. } => Error::NotNullViolation {
            message: format!(
                "column \"{}\" of relation \"{}\" contains null values",
                object.column.as_deref().unwrap_or_default(),
                def.name
            ),
            detail: None,
            object,
        },
        Error::CheckViolation { object, .. } => Error::CheckViolation {
            message: format!(
                "check constraint \"{}\" of relation \"{}\" is violated by some row",
                object.constraint.as_deref().unwrap_or_default(),
                def.name
            ),
            detail: None,
            object,
        },
        other => other,
    })?;
    // PostgreSQL rebuilds the indexes after the rewrite, and words a duplicate that way.
    txn.rewrite_table(&new_def, rows)
        .map_err(super::index::build_error)?;
    txn.put_entry(CatalogEntry::Table(new_def.clone()))?;
    def = new_def;

    // Referencing rows must still find their keys (a USING may have changed them).
    let catalog = txn.catalog();
    for (child, fk) in foreign_keys_on(&catalog, &def, column.id) {
        let parent = catalog
            .table_by_id(fk.ref_table)
            .cloned()
            .ok_or_else(|| Error::internal("a foreign key's table vanished"))?;
        super::foreign_key::check_existing_rows(txn, &child, &fk, &parent)?;
    }
    Ok(def)
}

/// Whether PostgreSQL converts `from` to `to` without a USING clause (an implicit or
/// assignment cast): between numeric types, to a string type from anything, between string
/// types, and among date and the timestamps. Not from text to anything else, nor between
/// booleans and numbers.
fn assignable(from: DataType, to: DataType) -> bool {
    use DataType::*;
    let number = |t: DataType| {
        matches!(
            t,
            Int16 | Int32 | Int64 | Float32 | Float64 | Numeric { .. }
        )
    };
    let string = |t: DataType| matches!(t, Text | Varchar(_) | Char(_));
    let time = |t: DataType| matches!(t, Date | Timestamp | TimestampTz);
    std::mem::discriminant(&from) == std::mem::discriminant(&to)
        || string(to)
        || (number(from) && number(to))
        || (time(from) && time(to))
}

/// Foreign keys with `column` of `table` among their columns, on either side, as (the table
/// that holds the key, the key), with `table` as defined now.
fn foreign_keys_on(
    catalog: &weft_storage::Catalog,
    table: &TableDef,
    column: u32,
) -> Vec<(TableDef, weft_storage::ForeignKeyDef)> {
    let mut out: Vec<(TableDef, weft_storage::ForeignKeyDef)> = table
        .foreign_keys
        .iter()
        .filter(|fk| {
            fk.columns.contains(&column)
                || (fk.ref_table == table.id && fk.ref_columns.contains(&column))
        })
        .map(|fk| (table.clone(), fk.clone()))
        .collect();
    for (child, fk) in catalog.referencing(table.id) {
        if child.id != table.id && fk.ref_columns.contains(&column) {
            out.push((child.clone(), fk.clone()));
        }
    }
    out
}

/// Each referencing column of `fk` (held by `child`) and the column it references still have
/// compatible types; `changed` is the table whose column changed, as defined now.
fn key_types_agree(
    catalog: &weft_storage::Catalog,
    child: &TableDef,
    fk: &weft_storage::ForeignKeyDef,
    changed: &TableDef,
) -> Result<()> {
    let as_now = |def: &TableDef| -> TableDef {
        if def.id == changed.id {
            changed.clone()
        } else {
            def.clone()
        }
    };
    let child = as_now(child);
    let parent = match catalog.table_by_id(fk.ref_table) {
        Some(p) => as_now(p),
        None => return Err(Error::internal("a foreign key's table vanished")),
    };
    let column = |def: &TableDef, id: u32| def.columns.iter().find(|c| c.id == id).cloned();
    for (&c, &r) in fk.columns.iter().zip(&fk.ref_columns) {
        let (Some(a), Some(b)) = (column(&child, c), column(&parent, r)) else {
            continue;
        };
        if !compatible(a.data_type, b.data_type) {
            return Err(incompatible(
                &fk.name,
                &a.name,
                &b.name,
                a.data_type,
                b.data_type,
            ));
        }
    }
    Ok(())
}

fn incompatible(fk: &str, a: &str, b: &str, ta: DataType, tb: DataType) -> Error {
    Error::Detailed {
        code: "42804",
        message: format!("foreign key constraint \"{fk}\" cannot be implemented"),
        detail: Some(format!(
            "Key columns \"{a}\" and \"{b}\" are of incompatible types: {} and {}.",
            sql_type_name(ta),
            sql_type_name(tb)
        )),
        hint: None,
        object: ErrorObject::default(),
    }
}
