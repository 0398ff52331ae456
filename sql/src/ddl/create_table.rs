//! CREATE TABLE: columns, primary key (or a hidden row id), NOT NULL, DEFAULT, UNIQUE, CHECK and
//! the table's consistency mode (`WITH (consistency = 'raft' | 'lww')`).

use std::sync::Arc;

use datafusion::arrow::datatypes::Field;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, TableReference};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast;
use weft_storage::{
    CatalogEntry, CheckDef, ColumnDef, Consistency, DataType, IndexDef, TableDef, Txn,
};

use super::{column_type, ident, object_name, tag};
use crate::convert::array_value;
use crate::error::{Error, Result};
use crate::eval::{compile, parse_expr};
use crate::pgtype::PgType;
use crate::sequence::{definition, identity, nextval_default, owned_name};
use crate::session::{ExecCtx, QueryOutput};
use crate::table::table_schema;

/// The hidden key column of a table declared without a primary key.
pub(crate) const ROWID: &str = "__weft_rowid";

/// The bound parameters of a CREATE TABLE … AS (its query's), with the types it was prepared
/// with.
pub(super) struct Params<'a> {
    pub types: &'a [PgType],
    pub values: Vec<datafusion::scalar::ScalarValue>,
}

pub(super) async fn execute(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    ct: &ast::CreateTable,
    sql: &Arc<str>,
    params: Params<'_>,
) -> Result<QueryOutput> {
    let name = object_name(&ct.name)?;
    if let Some(query) = &ct.query {
        return create_as(ctx, txn, ct, query, sql, params).await;
    }
    if exists(ctx, txn, ct, &name)? {
        return Ok(tag("CREATE TABLE"));
    }
    let consistency = consistency_option(&ct.table_options)?;
    let mut columns: Vec<ColumnDef> = Vec::new();
    let mut pk: Option<(Option<String>, Vec<usize>)> = None;
    let mut uniques: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    let mut checks: Vec<(Option<String>, ast::Expr, Option<String>)> = Vec::new();
    // FOREIGN KEYs, with the column of a column constraint.
    let mut foreign: Vec<(Option<usize>, ast::ForeignKeyConstraint)> = Vec::new();
    // Sequences of serial and identity columns: (column position, name, options).
    let mut sequences: Vec<(usize, String, Vec<ast::SequenceOptions>)> = Vec::new();
    let catalog = txn.catalog();
    for c in &ct.columns {
        let col_name = ident(&c.name);
        if columns.iter().any(|x| x.name == col_name) {
            return Err(Error::DuplicateColumn {
                message: format!("column \"{col_name}\" specified more than once"),
            });
        }
        let idx = columns.len();
        let serial = crate::sequence::serial_type(&c.data_type);
        let mut col = ColumnDef {
            id: idx as u32 + 1,
            name: col_name.clone(),
            data_type: match serial {
                Some(t) => t,
                None => column_type(&c.data_type)?,
            },
            nullable: true,
            default: None,
            hidden: false,
            identity: None,
        };
        for opt in &c.options {
            match &opt.option {
                ast::ColumnOption::Null => col.nullable = true,
                ast::ColumnOption::NotNull => col.nullable = false,
                ast::ColumnOption::Default(e) => col.default = Some(e.to_string()),
                ast::ColumnOption::PrimaryKey(_) => {
                    if pk.is_some() {
                        return Err(multiple_pk(&name));
                    }
                    pk = Some((opt.name.as_ref().map(ident), vec![idx]));
                }
                ast::ColumnOption::Unique(_) => {
                    uniques.push((opt.name.as_ref().map(ident), vec![idx]))
                }
                ast::ColumnOption::Check(chk) => checks.push((
                    opt.name
                        .as_ref()
                        .map(ident)
                        .or(chk.name.as_ref().map(ident)),
                    (*chk.expr).clone(),
                    Some(col_name.clone()),
                )),
                ast::ColumnOption::Generated {
                    generated_as,
                    sequence_options,
                    generation_expr: None,
                    ..
                } => {
                    let options = identity(
                        &mut col,
                        &name,
                        serial.is_some(),
                        generated_as,
                        sequence_options,
                    )?;
                    sequences.push((
                        idx,
                        owned_name(&catalog, &name, &col_name, &sequences),
                        options,
                    ));
                }
                ast::ColumnOption::ForeignKey(fk) => {
                    let mut fk = fk.clone();
                    if fk.name.is_none() {
                        fk.name = opt.name.clone();
                    }
                    foreign.push((Some(idx), fk));
                }
                other => return Err(Error::unsupported(format!("column option {other}"))),
            }
        }
        if serial.is_some() {
            col.nullable = false;
            sequences.push((
                idx,
                owned_name(&catalog, &name, &col_name, &sequences),
                Vec::new(),
            ));
        }
        if let Some((_, seq, _)) = sequences.last().filter(|s| s.0 == idx) {
            if col.default.is_some() {
                return Err(Error::syntax(format!(
                    "multiple default values specified for column \"{col_name}\" of table \"{name}\""
                )));
            }
            col.default = Some(nextval_default(seq));
        }
        columns.push(col);
    }
    let position = |cols: &[ast::IndexColumn], columns: &[ColumnDef]| -> Result<Vec<usize>> {
        cols.iter()
            .map(|ic| {
                let n = match &ic.column.expr {
                    ast::Expr::Identifier(i) => ident(i),
                    other => {
                        return Err(Error::unsupported(format!("expression {other} in a key")))
                    }
                };
                columns
                    .iter()
                    .position(|c| c.name == n)
                    .ok_or_else(|| Error::UndefinedColumn {
                        message: format!("column \"{n}\" named in key does not exist"),
                    })
            })
            .collect()
    };
    for c in &ct.constraints {
        match c {
            ast::TableConstraint::PrimaryKey(p) => {
                if pk.is_some() {
                    return Err(multiple_pk(&name));
                }
                pk = Some((p.name.as_ref().map(ident), position(&p.columns, &columns)?));
            }
            ast::TableConstraint::Unique(u) => {
                uniques.push((u.name.as_ref().map(ident), position(&u.columns, &columns)?))
            }
            ast::TableConstraint::Check(chk) => {
                checks.push((chk.name.as_ref().map(ident), (*chk.expr).clone(), None))
            }
            ast::TableConstraint::ForeignKey(fk) => foreign.push((None, fk.clone())),
            other => return Err(Error::unsupported(format!("table constraint {other}"))),
        }
    }
    let (pkey_name, primary_key) = match pk {
        Some((n, cols)) => {
            for &i in &cols {
                columns[i].nullable = false;
            }
            (n.unwrap_or_else(|| format!("{name}_pkey")), cols)
        }
        None => {
            if consistency == Consistency::Lww {
                return Err(Error::unsupported(
                    "an lww table without a primary key (rows must be identified on every node)",
                ));
            }
            columns.push(ColumnDef {
                id: columns.len() as u32 + 1,
                name: ROWID.to_string(),
                data_type: DataType::Int64,
                nullable: false,
                default: None,
                hidden: true,
                identity: None,
            });
            (format!("{name}_pkey"), vec![columns.len() - 1])
        }
    };
    if consistency == Consistency::Lww {
        lww_restrictions(&columns, &primary_key, &uniques, &checks)?;
    }
    // PostgreSQL creates a serial column's sequence before its table.
    let mut sequence_defs = Vec::new();
    for (col, seq_name, options) in &sequences {
        let seq_id = txn.alloc_id()?;
        sequence_defs.push((*col, seq_id, seq_name.clone(), options));
    }
    let id = txn.alloc_id()?;
    for (col, seq_id, seq_name, options) in sequence_defs {
        let column = &columns[col];
        let seq = definition(
            seq_id,
            seq_name,
            column.data_type,
            options,
            Some((id, column.id)),
        )?;
        txn.put_entry(CatalogEntry::Sequence(seq))?;
    }
    let mut def = TableDef {
        id,
        name: name.clone(),
        next_column_id: columns.len() as u32 + 1,
        columns,
        primary_key,
        pkey_name,
        indexes: Vec::new(),
        checks: Vec::new(),
        consistency,
        foreign_keys: Vec::new(),
        comments: Default::default(),
    };
    for (i, (n, cols)) in uniques.into_iter().enumerate() {
        let col_names: Vec<&str> = cols.iter().map(|&c| def.columns[c].name.as_str()).collect();
        let index_name = n.unwrap_or_else(|| format!("{name}_{}_key", col_names.join("_")));
        def.indexes.push(IndexDef {
            constraint: true,
            functions: Vec::new(),
            predicate: Vec::new(),
            id: i as u32 + 1,
            name: index_name,
            columns: cols,
            unique: true,
        });
    }
    let all: Vec<usize> = (0..def.columns.len()).collect();
    let schema = DFSchema::try_from_qualified_schema(name.as_str(), &table_schema(&def, &all))?;
    for (n, expr, col) in checks {
        // Plan now so a bad CHECK fails at CREATE time, not at the first insert.
        compile(ctx.state, &expr, &schema)?;
        let check_name = n.unwrap_or_else(|| {
            super::check_name(&name, &expr, col.as_deref(), |c| {
                def.checks.iter().any(|x| x.name == c)
            })
        });
        def.checks.push(CheckDef {
            name: check_name,
            expr: expr.to_string(),
        });
    }
    for c in &def.columns {
        if let Some(d) = &c.default {
            compile(ctx.state, &parse_expr(d)?, &DFSchema::empty())?;
        }
    }
    for (column, fk) in &foreign {
        let cols = super::foreign_key::referencing_columns(&def, &fk.columns, *column)?;
        let fk = super::foreign_key::define(&catalog, &def, fk, &cols)?;
        if def.foreign_keys.iter().any(|f| f.name == fk.name) {
            return Err(Error::DuplicateObject {
                message: format!(
                    "constraint \"{}\" for relation \"{name}\" already exists",
                    fk.name
                ),
            });
        }
        def.foreign_keys.push(fk);
    }
    txn.put_entry(CatalogEntry::Table(def))?;
    Ok(tag("CREATE TABLE"))
}

/// Whether `name` exists already and IF NOT EXISTS lets the statement skip it (with PostgreSQL's
/// notice); 42P07 without IF NOT EXISTS.
fn exists(ctx: &ExecCtx<'_>, txn: &Txn, ct: &ast::CreateTable, name: &str) -> Result<bool> {
    if txn.catalog().get_by_name(name).is_none() {
        return Ok(false);
    }
    if ct.if_not_exists {
        ctx.shared.push_notice(
            "42P07",
            format!("relation \"{name}\" already exists, skipping"),
        );
        return Ok(true);
    }
    Err(Error::DuplicateTable {
        message: format!("relation \"{name}\" already exists"),
    })
}

/// `CREATE TABLE name [(column, …)] [WITH (…)] AS query [WITH [NO] DATA]`, and `SELECT … INTO
/// name` (parsed into this form): a table without constraints (so with a hidden row id) whose
/// columns take the query's names, or the given ones, and types, filled with the query's rows in
/// the query's order. A column read straight from a table keeps that column's exact type
/// (`varchar(10)`, `numeric(10,2)`), as in PostgreSQL; a computed `numeric` is unconstrained.
async fn create_as(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    ct: &ast::CreateTable,
    query: &ast::Query,
    sql: &Arc<str>,
    params: Params<'_>,
) -> Result<QueryOutput> {
    let name = object_name(&ct.name)?;
    if exists(ctx, txn, ct, &name)? {
        return Ok(tag("CREATE TABLE AS"));
    }
    if !ct.constraints.is_empty()
        || ct
            .columns
            .iter()
            .any(|c| c.data_type != ast::DataType::Unspecified || !c.options.is_empty())
    {
        return Err(Error::syntax(
            "CREATE TABLE … AS takes column names only, without types or constraints",
        ));
    }
    let (options, no_data) = without_no_data(&ct.table_options);
    let stmt = crate::statement::Statement::query(query.clone(), Arc::clone(sql));
    let declared: Vec<Option<PgType>> = params.types.iter().copied().map(Some).collect();
    let plan = crate::query::plan(ctx.state, &stmt, &declared, txn.catalog()).await?;
    if ct.columns.len() > plan.fields.len() {
        return Err(Error::syntax("too many column names were specified"));
    }
    let mut columns = Vec::with_capacity(plan.fields.len());
    for (i, (qualifier, field)) in plan.plan.schema().iter().enumerate() {
        let info = &plan.fields[i];
        let column_name = ct
            .columns
            .get(i)
            .map_or(info.name.clone(), |c| ident(&c.name));
        let data_type = match read_from_table(txn, &plan.plan, qualifier, field) {
            Some(t) => t,
            None => stored_type(info.pg_type).ok_or_else(|| Error::FeatureNotSupported {
                feature: format!(
                    "a table column of type {} (column \"{column_name}\")",
                    crate::pgtype::regtype_name(info.pg_type.oid())
                ),
            })?,
        };
        columns.push(ast::ColumnDef {
            name: ast::Ident::with_quote('"', column_name),
            data_type: super::ast_type(data_type)?,
            options: Vec::new(),
        });
    }
    let create = ast::CreateTable {
        columns,
        query: None,
        table_options: options,
        ..ct.clone()
    };
    let none = Params {
        types: &[],
        values: Vec::new(),
    };
    Box::pin(execute(ctx, txn, &create, sql, none)).await?;
    if no_data {
        return Ok(tag("CREATE TABLE AS"));
    }
    let def = match txn.catalog().get_by_name(&name) {
        Some(CatalogEntry::Table(def)) => def.clone(),
        _ => {
            return Err(Error::internal(
                "the table CREATE TABLE … AS made is missing",
            ))
        }
    };
    let batches = crate::query::collect(ctx, &plan, params.values).await?;
    let cols: Vec<usize> = (0..plan.fields.len()).collect();
    let mut rows = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            rows.push(
                cols.iter()
                    .map(|&c| array_value(b.column(c), r, def.columns[c].data_type).map(Some))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
    }
    let n = crate::dml::insert::insert_rows(ctx, txn, &def, &cols, rows)?;
    Ok(tag(&format!("SELECT {n}")))
}

/// The table options without the marker of `WITH NO DATA`, and whether it was there.
fn without_no_data(options: &ast::CreateTableOptions) -> (ast::CreateTableOptions, bool) {
    let is_marker = |o: &ast::SqlOption| {
        matches!(o, ast::SqlOption::KeyValue { key, .. }
            if key.value == crate::dialect::NO_DATA && key.quote_style.is_none())
    };
    match options {
        ast::CreateTableOptions::With(list) if list.iter().any(is_marker) => {
            let rest: Vec<ast::SqlOption> =
                list.iter().filter(|o| !is_marker(o)).cloned().collect();
            let rest = if rest.is_empty() {
                ast::CreateTableOptions::None
            } else {
                ast::CreateTableOptions::With(rest)
            };
            (rest, true)
        }
        other => (other.clone(), false),
    }
}

/// The stored type of an output column that is a column of a stored table, read straight
/// (through table aliases only): `qualifier` names a scan of that table in `plan`.
fn read_from_table(
    txn: &Txn,
    plan: &LogicalPlan,
    qualifier: Option<&TableReference>,
    field: &Field,
) -> Option<DataType> {
    let qualifier = qualifier?;
    let mut table: Option<String> = None;
    let _ = plan.apply_with_subqueries(|node| {
        let scanned = match node {
            LogicalPlan::TableScan(scan) if scan.table_name == *qualifier => Some(&scan.table_name),
            LogicalPlan::SubqueryAlias(a) if a.alias == *qualifier => match a.input.as_ref() {
                LogicalPlan::TableScan(scan) => Some(&scan.table_name),
                _ => None,
            },
            _ => None,
        };
        Ok(match scanned {
            Some(t) => {
                table = Some(t.table().to_string());
                TreeNodeRecursion::Stop
            }
            None => TreeNodeRecursion::Continue,
        })
    });
    let catalog = txn.catalog();
    let Some(CatalogEntry::Table(def)) = catalog.get_by_name(&table?) else {
        return None;
    };
    let column = def.columns.iter().find(|c| c.name == *field.name())?;
    (crate::pgtype::arrow_type(column.data_type) == *field.data_type()).then_some(column.data_type)
}

/// The stored type of a computed output column of PostgreSQL type `t` (an unknown literal is
/// text, as in PostgreSQL 10 and later); None where tables cannot hold it.
fn stored_type(t: PgType) -> Option<DataType> {
    Some(match t {
        PgType::Bool => DataType::Bool,
        PgType::Bytea => DataType::Bytea,
        PgType::Int2 => DataType::Int16,
        PgType::Int4 => DataType::Int32,
        PgType::Int8 => DataType::Int64,
        PgType::Float4 => DataType::Float32,
        PgType::Float8 => DataType::Float64,
        PgType::Text | PgType::Name | PgType::Unknown | PgType::Char | PgType::Bpchar => {
            DataType::Text
        }
        PgType::Varchar => DataType::Varchar(None),
        PgType::Numeric => DataType::Numeric {
            precision: 38,
            scale: 16,
        },
        PgType::Date => DataType::Date,
        PgType::Timestamp => DataType::Timestamp,
        PgType::TimestampTz => DataType::TimestampTz,
        PgType::Uuid => DataType::Uuid,
        PgType::Json | PgType::Jsonb => DataType::Jsonb,
        array => {
            let element = stored_type(array.element()?)?;
            DataType::Array(weft_storage::ArrayElem::of(element)?)
        }
    })
}

fn multiple_pk(table: &str) -> Error {
    Error::InvalidTableDefinition {
        message: format!("multiple primary keys for table \"{table}\" are not allowed"),
    }
}

fn consistency_option(options: &ast::CreateTableOptions) -> Result<Consistency> {
    let list = match options {
        ast::CreateTableOptions::None => return Ok(Consistency::default()),
        ast::CreateTableOptions::With(l) => l,
        _ => return Err(Error::unsupported("table options other than WITH (...)")),
    };
    let mut consistency = Consistency::default();
    for o in list {
        match o {
            ast::SqlOption::KeyValue { key, value } if ident(key) == "consistency" => {
                let v = match value {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) => s.to_lowercase(),
                        other => other.to_string().to_lowercase(),
                    },
                    ast::Expr::Identifier(i) => i.value.to_lowercase(),
                    other => other.to_string(),
                };
                consistency = match v.as_str() {
                    "raft" => Consistency::Raft,
                    "lww" => Consistency::Lww,
                    _ => {
                        return Err(Error::InvalidParameterValue {
                            message: format!(
                                "invalid value for consistency: \"{v}\" (expected 'raft' or 'lww')"
                            ),
                        })
                    }
                };
            }
            ast::SqlOption::KeyValue { key, .. } => {
                return Err(Error::InvalidParameterValue {
                    message: format!("unrecognized parameter \"{}\"", ident(key)),
                })
            }
            other => return Err(Error::unsupported(format!("table option {other}"))),
        }
    }
    Ok(consistency)
}

/// What last-writer-wins cannot keep without coordination is refused up front.
fn lww_restrictions(
    columns: &[ColumnDef],
    pk: &[usize],
    uniques: &[(Option<String>, Vec<usize>)],
    checks: &[(Option<String>, ast::Expr, Option<String>)],
) -> Result<()> {
    if !uniques.is_empty() {
        return Err(Error::unsupported(
            "UNIQUE constraints on an lww table (two nodes may insert the same value concurrently; only the primary key is unique)",
        ));
    }
    if !checks.is_empty() {
        return Err(Error::unsupported(
            "CHECK constraints on an lww table (a row merged cell by cell from concurrent writes may not satisfy them)",
        ));
    }
    if let Some(c) = columns
        .iter()
        .enumerate()
        .find(|(i, c)| !c.nullable && !pk.contains(i))
    {
        return Err(Error::unsupported(format!(
            "NOT NULL on non-key column \"{}\" of an lww table (a concurrent delete and update can revive a row whose other cells read as NULL)",
            c.1.name
        )));
    }
    Ok(())
}
