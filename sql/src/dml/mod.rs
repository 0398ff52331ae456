//! DML: INSERT, UPDATE and DELETE write rows into the session's transaction. Rows to change are
//! found by a DataFusion query over the transaction's snapshot, fully read before the first write.

pub(crate) mod constraints;
mod delete;
pub(crate) mod foreign;
pub(crate) mod insert;
pub(crate) mod point;
mod returning;
mod select;
mod update;
mod upsert;
pub(crate) mod with;

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast;
use weft_storage::{CatalogEntry, TableDef, Txn};

use crate::ddl::{ident, object_name};
use crate::error::{Error, Result};
use crate::pgtype::PgType;
use crate::session::{ExecCtx, FieldInfo, QueryOutput, Session};
use crate::statement::Statement;

pub(crate) async fn execute(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    stmt: &Statement,
    param_types: &[PgType],
    params: Vec<ScalarValue>,
) -> Result<QueryOutput> {
    let params = Params::new(param_types, params)?;
    match &*stmt.ast {
        ast::Statement::Insert(i) => insert::execute(ctx, txn, i, &params, stmt.overriding).await,
        ast::Statement::Update(u) => update::execute(ctx, txn, u, &params).await,
        ast::Statement::Delete(d) => delete::execute(ctx, txn, d, &params).await,
        _ => Err(Error::internal("not a DML statement")),
    }
}

/// Parameter types and RowDescription of a DML statement, for Describe.
pub(crate) async fn describe(
    session: &Session,
    stmt: &Statement,
    declared: &[Option<PgType>],
) -> Result<(Vec<PgType>, Option<Arc<Vec<FieldInfo>>>)> {
    let catalog = session.shared.catalog();
    let ctx = ExecCtx {
        state: &session.state,
        shared: &session.shared,
        read_only: false,
        point_path: false,
        cancel: &session.cancel,
    };
    let (def, qualifier, returning, hints, query) = match &*stmt.ast {
        ast::Statement::Insert(i) => {
            let def = target_by_name(&catalog, insert::table_name(i)?)?;
            let hints = insert::param_hints(&def, i)?;
            let q = insert::select_source(i);
            (def.clone(), def.name.clone(), i.returning.clone(), hints, q)
        }
        ast::Statement::Update(u) => {
            let (def, qualifier) = update::target(&catalog, u)?;
            let hints = update::param_hints(&def, u)?;
            let q = Some(update::source_query(&def, &qualifier, u)?);
            (def, qualifier, u.returning.clone(), hints, q)
        }
        ast::Statement::Delete(d) => {
            let (def, qualifier) = delete::target(&catalog, d)?;
            let q = Some(delete::source_query(&def, &qualifier, d)?);
            (def, qualifier, d.returning.clone(), Vec::new(), q)
        }
        _ => return Err(Error::internal("not a DML statement")),
    };
    let mut types: Vec<Option<PgType>> = declared.to_vec();
    for (n, t) in hints {
        if types.len() < n {
            types.resize(n, None);
        }
        if types[n - 1].is_none() {
            types[n - 1] = Some(t);
        }
    }
    if let Some(q) = query {
        let planned = select::param_types(&ctx, def.id, &q, &types).await?;
        for (i, t) in planned.into_iter().enumerate() {
            if types.len() <= i {
                types.resize(i + 1, None);
            }
            if types[i].is_none() {
                types[i] = Some(t);
            }
        }
    }
    let param_types = types
        .into_iter()
        .map(|t| t.unwrap_or(PgType::Text))
        .collect();
    let fields = match returning {
        Some(items) => Some(Arc::new(returning::describe(
            &ctx, &def, &qualifier, &items,
        )?)),
        None => None,
    };
    Ok((param_types, fields))
}

/// Every row of `def` as the transaction sees it, as record batches: its columns (hidden ones
/// too) in table order, then one column per expression of `extra` over them (ALTER COLUMN …
/// TYPE … USING).
pub(crate) async fn rows_with(
    ctx: &ExecCtx<'_>,
    def: &TableDef,
    extra: Vec<ast::Expr>,
) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>> {
    let mut projection = select::all_columns(def, &def.name);
    for (i, expr) in extra.into_iter().enumerate() {
        projection.push(ast::SelectItem::ExprWithAlias {
            expr,
            alias: ast::Ident::new(format!("weft_expr_{i}")),
        });
    }
    let template = format!("SELECT 1 FROM {}", ast::Ident::with_quote('"', &def.name));
    let from = match crate::statement::parse(&template)?.pop().map(|s| s.ast) {
        Some(stmt) => match &*stmt {
            ast::Statement::Query(q) => match q.body.as_ref() {
                ast::SetExpr::Select(s) => s.from.clone(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    if from.is_empty() {
        return Err(Error::internal("the row query of a table did not parse"));
    }
    let stmt = select::select_stmt(projection, from, None)?;
    let params = Params {
        values: Vec::new(),
        types: Vec::new(),
    };
    select::run(ctx, def.id, &stmt, &params).await
}

/// Bound parameter values with the types the statement was prepared with.
pub(crate) struct Params {
    pub values: Vec<ScalarValue>,
    pub types: Vec<PgType>,
}

impl Params {
    fn new(types: &[PgType], values: Vec<ScalarValue>) -> Result<Params> {
        let values = values
            .into_iter()
            .zip(types)
            .map(|(v, t)| crate::query::cast_param(v, &t.to_arrow()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Params {
            values,
            types: types.to_vec(),
        })
    }

    pub fn declared(&self) -> Vec<Option<PgType>> {
        self.types.iter().copied().map(Some).collect()
    }

    /// The value of `$n`.
    pub fn get(&self, placeholder: &str) -> Result<&ScalarValue> {
        placeholder
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| Error::ProtocolViolation {
                message: format!("no value for parameter {placeholder}"),
            })
    }
}

pub(crate) fn target_by_name<'a>(
    catalog: &'a weft_storage::Catalog,
    name: String,
) -> Result<&'a TableDef> {
    match catalog.get_by_name(&name) {
        Some(CatalogEntry::Table(t)) => Ok(t),
        Some(_) => Err(Error::WrongObjectType {
            message: format!("cannot change relation \"{name}\": not a table"),
        }),
        None => Err(Error::UndefinedTable {
            message: format!("relation \"{name}\" does not exist"),
        }),
    }
}

/// The target table of UPDATE/DELETE and the name its columns are qualified by.
pub(crate) fn table_factor_target(
    catalog: &weft_storage::Catalog,
    t: &ast::TableFactor,
) -> Result<(TableDef, String)> {
    match t {
        ast::TableFactor::Table { name, alias, .. } => {
            let def = target_by_name(catalog, object_name(name)?)?.clone();
            let qualifier = alias
                .as_ref()
                .map(|a| ident(&a.name))
                .unwrap_or_else(|| def.name.clone());
            Ok((def, qualifier))
        }
        other => Err(Error::unsupported(format!("DML target {other}"))),
    }
}

/// The column an assignment or column list names, by position.
pub(crate) fn column_of(def: &TableDef, name: &ast::ObjectName) -> Result<usize> {
    let last = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(ident)
        .unwrap_or_default();
    def.column_index(&last)
        .filter(|&i| !def.columns[i].hidden)
        .ok_or_else(|| Error::UndefinedColumn {
            message: format!(
                "column \"{last}\" of relation \"{}\" does not exist",
                def.name
            ),
        })
}
