//! Sequences: `CREATE SEQUENCE`, `nextval`, `currval`, `setval`, `lastval`, and the sequences
//! behind `serial` and identity columns. Values come from the node's blocks
//! (`weft_storage::sequence`); a sequence the open transaction created itself counts inside that
//! transaction until it commits.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, Signature, TypeSignature, Volatility,
};
use datafusion::sql::sqlparser::ast;
use weft_storage::sequence::SequenceState;
use weft_storage::{
    Catalog, CatalogEntry, ColumnDef, ColumnId, DataType, Identity, SequenceDef, TableDef, TableId,
    Txn,
};

use crate::ddl::{ident, object_name, tag};
use crate::error::{to_df, Error, Result};
use crate::functions::udf;
use crate::session::QueryOutput;
use crate::shared::SessionShared;

/// What a session remembers of sequences.
#[derive(Default)]
pub(crate) struct SessionSequences {
    /// The value `nextval` last gave this session, per sequence (`currval`).
    current: HashMap<TableId, i64>,
    /// The sequence `nextval` was last called on (`lastval`).
    last: Option<TableId>,
    /// States of sequences the open transaction created, written into it when the statement ends.
    pending: HashMap<TableId, SequenceState>,
    /// The running statement is in a READ ONLY transaction: nextval and setval are refused.
    pub read_only: bool,
}

impl SessionSequences {
    pub fn take_pending(&mut self) -> Vec<(TableId, SequenceState)> {
        self.pending.drain().collect()
    }
}

/// `nextval`, `currval`, `setval` and `lastval` for one session.
pub(crate) fn udfs(shared: &Arc<SessionShared>) -> Vec<Arc<ScalarUDF>> {
    let regclass = |extra: &[ArrowType]| -> Vec<TypeSignature> {
        [ArrowType::Utf8, ArrowType::Int64]
            .into_iter()
            .map(|first| {
                let mut types = vec![first];
                types.extend_from_slice(extra);
                TypeSignature::Exact(types)
            })
            .collect()
    };
    let next = Arc::clone(shared);
    let current = Arc::clone(shared);
    let set = Arc::clone(shared);
    let last = Arc::clone(shared);
    let mut setval_sigs = regclass(&[ArrowType::Int64]);
    setval_sigs.extend(regclass(&[ArrowType::Int64, ArrowType::Boolean]));
    vec![
        udf(
            "nextval",
            Signature::one_of(regclass(&[]), Volatility::Volatile),
            ArrowType::Int64,
            None,
            Arc::new(move |args| {
                per_row(args, |row| {
                    let def = sequence_arg(&next, &row[0])?;
                    nextval(&next, &def).map(Some)
                })
            }),
        ),
        udf(
            "currval",
            Signature::one_of(regclass(&[]), Volatility::Volatile),
            ArrowType::Int64,
            None,
            Arc::new(move |args| {
                per_row(args, |row| {
                    let def = sequence_arg(&current, &row[0])?;
                    match current.sequences.lock().current.get(&def.id) {
                        Some(v) => Ok(Some(*v)),
                        None => Err(not_yet(format!(
                            "currval of sequence \"{}\" is not yet defined in this session",
                            def.name
                        ))),
                    }
                })
            }),
        ),
        udf(
            "setval",
            Signature::one_of(setval_sigs, Volatility::Volatile),
            ArrowType::Int64,
            None,
            Arc::new(move |args| {
                per_row(args, |row| {
                    let def = sequence_arg(&set, &row[0])?;
                    let Some(value) = int_arg(&row[1]) else {
                        return Ok(None);
                    };
                    let called = match row.get(2) {
                        None => true,
                        Some(ScalarValue::Boolean(Some(b))) => *b,
                        Some(_) => return Ok(None),
                    };
                    setval(&set, &def, value, called)?;
                    Ok(Some(value))
                })
            }),
        ),
        udf(
            "lastval",
            Signature::nullary(Volatility::Volatile),
            ArrowType::Int64,
            None,
            Arc::new(move |args| {
                let seqs = last.sequences.lock();
                let value = seqs
                    .last
                    .and_then(|id| seqs.current.get(&id).copied())
                    .ok_or_else(|| {
                        to_df(not_yet("lastval is not yet defined in this session".into()))
                    })?;
                let n = args.number_rows.max(1);
                Ok(ColumnarValue::Array(Arc::new(Int64Array::from(vec![
                    value;
                    n
                ]))))
            }),
        ),
    ]
}

fn not_yet(message: String) -> Error {
    Error::ObjectNotInPrerequisiteState { message }
}

/// Calls `f` with each row's argument values (a NULL argument gives NULL without calling it).
fn per_row(
    args: &ScalarFunctionArgs,
    mut f: impl FnMut(&[ScalarValue]) -> Result<Option<i64>>,
) -> DfResult<ColumnarValue> {
    let rows = crate::functions::scalar_rows(args)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if row.iter().take(2).any(ScalarValue::is_null) {
            out.push(None);
            continue;
        }
        out.push(f(&row).map_err(to_df)?);
    }
    Ok(ColumnarValue::Array(Arc::new(Int64Array::from(out))))
}

fn int_arg(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int64(v) => *v,
        _ => None,
    }
}

/// The sequence a `regclass` argument names: its text (`'s'`, `'public.s'`, `'"S"'`) or oid.
fn sequence_arg(shared: &SessionShared, arg: &ScalarValue) -> Result<SequenceDef> {
    let catalog = shared.catalog();
    let (entry, shown) = match arg {
        ScalarValue::Int64(Some(oid)) => (
            u32::try_from(*oid)
                .ok()
                .and_then(|id| catalog.entries.get(&id)),
            oid.to_string(),
        ),
        ScalarValue::Utf8(Some(text)) => {
            let name = relation_name(text)?;
            (catalog.get_by_name(&name), name)
        }
        other => {
            return Err(Error::internal(format!(
                "sequence argument of type {}",
                other.data_type()
            )))
        }
    };
    match entry {
        Some(CatalogEntry::Sequence(s)) => Ok(s.clone()),
        Some(other) => Err(Error::WrongObjectType {
            message: format!("\"{}\" is not a sequence", other.name()),
        }),
        None => Err(Error::UndefinedTable {
            message: format!("relation \"{shown}\" does not exist"),
        }),
    }
}

/// A relation name as `regclass` input reads it.
fn relation_name(text: &str) -> Result<String> {
    let name =
        datafusion::sql::sqlparser::parser::Parser::new(&crate::dialect::WeftDialect::default())
            .try_with_sql(text)
            .and_then(|mut p| p.parse_object_name(false))
            .map_err(|_| Error::InvalidTextRepresentation {
                message: format!("invalid name syntax: \"{text}\""),
            })?;
    object_name(&name)
}

/// Whether `def` is committed (else the open transaction created it and holds its state).
fn committed(shared: &SessionShared, def: &SequenceDef) -> bool {
    shared.storage.catalog().sequence_by_id(def.id).is_some()
}

fn writable(shared: &SessionShared, function: &str) -> Result<()> {
    if shared.sequences.lock().read_only {
        return Err(Error::ReadOnlyTransaction {
            message: format!("cannot execute {function}() in a read-only transaction"),
        });
    }
    Ok(())
}

fn nextval(shared: &SessionShared, def: &SequenceDef) -> Result<i64> {
    writable(shared, "nextval")?;
    let value = if committed(shared, def) {
        match shared.storage.nextval_cached(def.id) {
            Some(v) => v,
            None => crate::functions::block_on(shared.storage.nextval(def.id))??,
        }
    } else {
        let mut seqs = shared.sequences.lock();
        let mut state = match seqs.pending.get(&def.id) {
            Some(s) => *s,
            None => own_state(shared, def)?,
        };
        let v = state.advance(def)?;
        seqs.pending.insert(def.id, state);
        v
    };
    let mut seqs = shared.sequences.lock();
    seqs.current.insert(def.id, value);
    seqs.last = Some(def.id);
    Ok(value)
}

fn setval(shared: &SessionShared, def: &SequenceDef, value: i64, called: bool) -> Result<()> {
    writable(shared, "setval")?;
    if committed(shared, def) {
        crate::functions::block_on(shared.storage.setval(def.id, value, called))??;
    } else {
        let mut seqs = shared.sequences.lock();
        let mut state = match seqs.pending.get(&def.id) {
            Some(s) => *s,
            None => own_state(shared, def)?,
        };
        state.set(def, value, called)?;
        seqs.pending.insert(def.id, state);
    }
    if called {
        shared.sequences.lock().current.insert(def.id, value);
    }
    Ok(())
}

/// The state of a sequence the open transaction created, as the transaction sees it.
fn own_state(shared: &SessionShared, def: &SequenceDef) -> Result<SequenceState> {
    match shared.read() {
        Some(view) => Ok(view.reader.sequence_state(def)?),
        None => Ok(SequenceState::initial(def)),
    }
}

/// `CREATE SEQUENCE`.
pub(crate) fn create(
    shared: &SessionShared,
    txn: &mut Txn,
    stmt: &ast::Statement,
) -> Result<QueryOutput> {
    let ast::Statement::CreateSequence {
        temporary,
        if_not_exists,
        name,
        data_type,
        sequence_options,
        owned_by,
    } = stmt
    else {
        return Err(Error::internal("not CREATE SEQUENCE"));
    };
    if *temporary {
        return Err(Error::unsupported("temporary sequences"));
    }
    let name = object_name(name)?;
    let catalog = txn.catalog();
    if catalog.get_by_name(&name).is_some() {
        if *if_not_exists {
            shared.push_notice(
                "42P07",
                format!("relation \"{name}\" already exists, skipping"),
            );
            return Ok(tag("CREATE SEQUENCE"));
        }
        return Err(Error::DuplicateTable {
            message: format!("relation \"{name}\" already exists"),
        });
    }
    let data_type = match data_type {
        None => DataType::Int64,
        Some(t) => integer_type(t).ok_or_else(|| Error::InvalidParameterValue {
            message: "sequence type must be smallint, integer, or bigint".into(),
        })?,
    };
    let owned_by = match owned_by {
        None => None,
        Some(o) if o.to_string().eq_ignore_ascii_case("none") => None,
        Some(o) => Some(owner(&catalog, o)?),
    };
    let id = txn.alloc_id()?;
    let def = definition(id, name, data_type, sequence_options, owned_by)?;
    txn.put_entry(CatalogEntry::Sequence(def))?;
    Ok(tag("CREATE SEQUENCE"))
}

/// `GENERATED { ALWAYS | BY DEFAULT } AS IDENTITY [(options)]` on `col` of table `table`: marks the
/// column (NOT NULL, identity) and returns its sequence's options.
pub(crate) fn identity(
    col: &mut ColumnDef,
    table: &str,
    serial: bool,
    generated_as: &ast::GeneratedAs,
    options: &Option<Vec<ast::SequenceOptions>>,
) -> Result<Vec<ast::SequenceOptions>> {
    if !matches!(
        col.data_type,
        DataType::Int16 | DataType::Int32 | DataType::Int64
    ) {
        return Err(Error::InvalidParameterValue {
            message: "identity column type must be smallint, integer, or bigint".into(),
        });
    }
    if col.identity.is_some() || serial {
        return Err(Error::syntax(format!(
            "multiple identity specifications for column \"{}\" of table \"{table}\"",
            col.name
        )));
    }
    col.identity = Some(match generated_as {
        ast::GeneratedAs::Always => Identity::Always,
        _ => Identity::ByDefault,
    });
    col.nullable = false;
    Ok(options.clone().unwrap_or_default())
}

/// Creates the sequence of a serial or identity column added to table `table` and points the
/// column's DEFAULT at it.
pub(crate) fn attach(
    txn: &mut Txn,
    table: &TableDef,
    col: &mut ColumnDef,
    options: &[ast::SequenceOptions],
) -> Result<()> {
    let catalog = txn.catalog();
    let name = owned_name::<()>(&catalog, &table.name, &col.name, &[]);
    if col.default.is_some() {
        return Err(Error::syntax(format!(
            "multiple default values specified for column \"{}\" of table \"{}\"",
            col.name, table.name
        )));
    }
    let id = txn.alloc_id()?;
    let def = definition(id, name, col.data_type, options, Some((table.id, col.id)))?;
    col.default = Some(nextval_default(&def.name));
    col.nullable = false;
    Ok(txn.put_entry(CatalogEntry::Sequence(def))?)
}

/// `OWNED BY table.column`.
fn owner(catalog: &Catalog, o: &ast::ObjectName) -> Result<(TableId, ColumnId)> {
    let parts: Vec<String> = o.0.iter().filter_map(|p| p.as_ident().map(ident)).collect();
    owner_of_parts(catalog, &parts)
}

/// `table.column` (or `public.table.column`) as an owner.
fn owner_of_parts(catalog: &Catalog, parts: &[String]) -> Result<(TableId, ColumnId)> {
    let parts = match parts {
        [schema, rest @ ..] if schema == "public" && rest.len() == 2 => rest,
        _ => parts,
    };
    let [table, column] = parts else {
        return Err(Error::syntax(
            "invalid OWNED BY option (specify OWNED BY table.column or OWNED BY NONE)",
        ));
    };
    let def = catalog.table(table).ok_or_else(|| Error::UndefinedTable {
        message: format!("relation \"{table}\" does not exist"),
    })?;
    let col = def
        .columns
        .iter()
        .find(|c| &c.name == column && !c.hidden)
        .ok_or_else(|| Error::UndefinedColumn {
            message: format!("column \"{column}\" of relation \"{table}\" does not exist"),
        })?;
    Ok((def.id, col.id))
}

/// `ALTER SEQUENCE [IF EXISTS] name OWNED BY { table.column | NONE }`; other options are
/// refused (0A000; `setval` sets the next value).
pub(crate) fn alter(
    shared: &SessionShared,
    txn: &mut Txn,
    if_exists: bool,
    name: &[String],
    what: &crate::dialect::AlterSequence,
) -> Result<QueryOutput> {
    let owned_by = match what {
        crate::dialect::AlterSequence::OwnedBy(parts) => parts,
        crate::dialect::AlterSequence::Other(text) => {
            return Err(Error::unsupported(format!(
                "ALTER SEQUENCE … {text} (only OWNED BY; setval() sets the next value)"
            )))
        }
    };
    let name = match name {
        [schema, n] if schema == "public" => n.clone(),
        [n] => n.clone(),
        _ => {
            return Err(Error::unsupported(format!(
                "schemas other than public (in {})",
                name.join(".")
            )))
        }
    };
    let catalog = txn.catalog();
    let mut def = match catalog.get_by_name(&name) {
        Some(CatalogEntry::Sequence(s)) => s.clone(),
        Some(_) => {
            return Err(Error::WrongObjectType {
                message: format!("\"{name}\" is not a sequence"),
            })
        }
        None if if_exists => {
            shared.push_notice(
                "00000",
                format!("relation \"{name}\" does not exist, skipping"),
            );
            return Ok(tag("ALTER SEQUENCE"));
        }
        None => {
            return Err(Error::UndefinedTable {
                message: format!("relation \"{name}\" does not exist"),
            })
        }
    };
    def.owned_by = if owned_by.is_empty() {
        None
    } else {
        Some(owner_of_parts(&catalog, owned_by)?)
    };
    txn.put_entry(CatalogEntry::Sequence(def))?;
    Ok(tag("ALTER SEQUENCE"))
}

/// `smallint`, `integer` or `bigint`.
pub(crate) fn integer_type(t: &ast::DataType) -> Option<DataType> {
    match crate::ddl::column_type(t).ok()? {
        d @ (DataType::Int16 | DataType::Int32 | DataType::Int64) => Some(d),
        _ => None,
    }
}

/// The column type and sequence type of `serial`, `bigserial` and `smallserial`.
pub(crate) fn serial_type(t: &ast::DataType) -> Option<DataType> {
    let ast::DataType::Custom(name, modifiers) = t else {
        return None;
    };
    if !modifiers.is_empty() {
        return None;
    }
    match name.to_string().to_lowercase().as_str() {
        "serial" | "serial4" => Some(DataType::Int32),
        "bigserial" | "serial8" => Some(DataType::Int64),
        "smallserial" | "serial2" => Some(DataType::Int16),
        _ => None,
    }
}

/// A sequence's definition from its options, with PostgreSQL's defaults and checks.
pub(crate) fn definition(
    id: TableId,
    name: String,
    data_type: DataType,
    options: &[ast::SequenceOptions],
    owned_by: Option<(TableId, ColumnId)>,
) -> Result<SequenceDef> {
    let (type_min, type_max, type_name) = match data_type {
        DataType::Int16 => (i64::from(i16::MIN), i64::from(i16::MAX), "smallint"),
        DataType::Int32 => (i64::from(i32::MIN), i64::from(i32::MAX), "integer"),
        _ => (i64::MIN, i64::MAX, "bigint"),
    };
    let mut increment = 1;
    let (mut min, mut max, mut start, mut cache, mut cycle) = (None, None, None, 1, false);
    for o in options {
        match o {
            ast::SequenceOptions::IncrementBy(e, _) => increment = option_value(e)?,
            ast::SequenceOptions::MinValue(e) => min = e.as_ref().map(option_value).transpose()?,
            ast::SequenceOptions::MaxValue(e) => max = e.as_ref().map(option_value).transpose()?,
            ast::SequenceOptions::StartWith(e, _) => start = Some(option_value(e)?),
            ast::SequenceOptions::Cache(e) => cache = option_value(e)?,
            ast::SequenceOptions::Cycle(no) => cycle = !*no,
        }
    }
    let bad = |message: String| Error::InvalidParameterValue { message };
    if increment == 0 {
        return Err(bad("INCREMENT must not be zero".into()));
    }
    let max = max.unwrap_or(if increment > 0 { type_max } else { -1 });
    let min = min.unwrap_or(if increment > 0 { 1 } else { type_min });
    for (label, v) in [("MAXVALUE", max), ("MINVALUE", min)] {
        if v < type_min || v > type_max {
            return Err(bad(format!(
                "{label} ({v}) is out of range for sequence data type {type_name}"
            )));
        }
    }
    if min >= max {
        return Err(bad(format!(
            "MINVALUE ({min}) must be less than MAXVALUE ({max})"
        )));
    }
    let start = start.unwrap_or(if increment > 0 { min } else { max });
    if start < min {
        return Err(bad(format!(
            "START value ({start}) cannot be less than MINVALUE ({min})"
        )));
    }
    if start > max {
        return Err(bad(format!(
            "START value ({start}) cannot be greater than MAXVALUE ({max})"
        )));
    }
    if cache < 1 {
        return Err(bad(format!("CACHE ({cache}) must be greater than zero")));
    }
    Ok(SequenceDef {
        id,
        name,
        data_type,
        start,
        increment,
        min,
        max,
        cache,
        cycle,
        owned_by,
    })
}

/// An option's integer (a literal, possibly negated).
fn option_value(e: &ast::Expr) -> Result<i64> {
    let bad = || Error::syntax(format!("invalid sequence option value {e}"));
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse().map_err(|_| bad()),
            _ => Err(bad()),
        },
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => option_value(expr)?.checked_neg().ok_or_else(bad),
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Plus,
            expr,
        } => option_value(expr),
        _ => Err(bad()),
    }
}

/// A name for a column's sequence, `table_column_seq`, made unique as PostgreSQL does (a digit
/// appended until no relation has it).
pub(crate) fn owned_name<T>(
    catalog: &Catalog,
    table: &str,
    column: &str,
    taken: &[(usize, String, T)],
) -> String {
    let base = format!("{table}_{column}_seq");
    let free =
        |n: &str| catalog.get_by_name(n).is_none() && n != table && !taken.iter().any(|t| t.1 == n);
    if free(&base) {
        return base;
    }
    (1..)
        .map(|i| format!("{base}{i}"))
        .find(|n| free(n))
        .unwrap_or(base)
}

/// The DEFAULT of a column fed by sequence `name`, as PostgreSQL writes it.
pub(crate) fn nextval_default(name: &str) -> String {
    format!(
        "nextval({}::regclass)",
        crate::format::quote_literal(&crate::format::quote_ident(name))
    )
}

/// `n` values for a DEFAULT that is `nextval_default` of a sequence (a serial or identity
/// column), without planning the expression; `None` for any other DEFAULT.
pub(crate) fn default_values(
    shared: &SessionShared,
    default: &str,
    column_type: DataType,
    n: usize,
) -> Option<Result<Vec<weft_storage::Value>>> {
    if !matches!(
        column_type,
        DataType::Int16 | DataType::Int32 | DataType::Int64
    ) {
        return None;
    }
    let quoted = default
        .strip_prefix("nextval('")?
        .strip_suffix("'::regclass)")?
        .replace("''", "'");
    let name = match quoted.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?.replace("\"\"", "\""),
        None => quoted,
    };
    if nextval_default(&name) != default {
        return None;
    }
    let catalog = shared.catalog();
    let Some(CatalogEntry::Sequence(def)) = catalog.get_by_name(&name) else {
        return None;
    };
    let values = (0..n)
        .map(|_| {
            let v = nextval(shared, def)?;
            let out_of_range = || Error::NumericOutOfRange {
                message: format!("{} out of range", column_type_name(column_type)),
            };
            Ok(match column_type {
                DataType::Int16 => {
                    weft_storage::Value::Int16(i16::try_from(v).map_err(|_| out_of_range())?)
                }
                DataType::Int32 => {
                    weft_storage::Value::Int32(i32::try_from(v).map_err(|_| out_of_range())?)
                }
                _ => weft_storage::Value::Int64(v),
            })
        })
        .collect();
    Some(values)
}

fn column_type_name(t: DataType) -> &'static str {
    match t {
        DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        _ => "bigint",
    }
}

/// Columns whose DEFAULT calls `nextval` on sequence `name` (`table.column`).
pub(crate) fn dependents(catalog: &Catalog, name: &str) -> Vec<(String, String)> {
    // As written by serial columns, by hand and by pg_dump (`'public.t_id_seq'::regclass`, which
    // the parser may have turned into a function call around the literal).
    let patterns = [
        format!("'{name}'"),
        format!("'\"{name}\"'"),
        format!("'public.{name}'"),
        format!("'public.\"{name}\"'"),
    ];
    let mut out = Vec::new();
    for t in catalog.tables() {
        for c in &t.columns {
            if let Some(d) = &c.default {
                if d.to_lowercase().contains("nextval(")
                    && patterns.iter().any(|p| d.contains(p.as_str()))
                {
                    out.push((t.name.clone(), c.name.clone()));
                }
            }
        }
    }
    out
}

/// The sequence states nextval and setval left for sequences this transaction created, written
/// into it (called when each statement ends).
pub(crate) fn flush_pending(shared: &SessionShared, txn: &mut Txn) -> Result<()> {
    let pending = shared.sequences.lock().take_pending();
    for (id, state) in pending {
        txn.set_sequence_state(id, state)?;
    }
    Ok(())
}
