//! Foreign keys: checked, and their referential actions run, at the end of each statement.
//!
//! ```text
//!   Txn::insert / update / delete of a table that has a foreign key or is referenced by one
//!     --> RiEvent (old row, new row) queued in the transaction
//!   end of the statement: enforce()
//!     referenced side: a key that stopped existing (and is not back) --> its referencing rows:
//!         NO ACTION / RESTRICT: 23503;  CASCADE: deleted or given the new key;
//!         SET NULL / SET DEFAULT: updated (their writes queue events of their own: a cascade
//!         goes on in the next round)
//!     referencing side: a new or changed key that is not NULL --> the referenced row must exist
//! ```
//!
//! Checking at the end of the statement is PostgreSQL's NOT DEFERRABLE behaviour: a statement
//! may insert a child before its parent, or delete both, and only what holds when it ends
//! counts. Concurrent transactions meet through two keys per referenced key
//! (`Txn::fk_reference` / `Txn::fk_release`): one that references a key and one that makes it
//! stop existing cannot both commit (40001), whichever commits first.

use weft_storage::{
    format_value, DataType, FkAction, ForeignKeyDef, IndexId, KeyRange, RiEvent, Row, TableDef,
    Txn, Value,
};

use super::constraints;
use crate::error::{Error, ErrorObject, Result};
use crate::session::ExecCtx;

/// Rounds of referential actions one statement may set off (each cascading one level).
const MAX_ROUNDS: usize = 1000;

/// Rows read at a time while looking for referencing rows.
const SCAN_BATCH: usize = 1024;

/// Checks the foreign keys of every row the statement wrote and runs their actions.
pub(crate) fn enforce(ctx: &ExecCtx<'_>, txn: &mut Txn) -> Result<()> {
    for _ in 0..MAX_ROUNDS {
        let events = txn.take_ri_events();
        if events.is_empty() {
            return Ok(());
        }
        let catalog = txn.catalog();
        for e in events {
            let Some(def) = catalog.table_by_id(e.table) else {
                continue;
            };
            let mut defer = false;
            if let Some(old) = &e.old {
                for (child, fk) in catalog.referencing(def.id) {
                    let action = if e.new.is_some() {
                        fk.on_update
                    } else {
                        fk.on_delete
                    };
                    if action == FkAction::NoAction && txn.fk_deferred(child.id, fk) {
                        defer = true;
                        continue;
                    }
                    referenced_key_changed(ctx, txn, def, old, e.new.as_ref(), child, fk)?;
                }
            }
            if let Some(new) = &e.new {
                for fk in &def.foreign_keys {
                    if txn.fk_deferred(def.id, fk) {
                        defer = true;
                        continue;
                    }
                    let parent = catalog.table_by_id(fk.ref_table).ok_or_else(|| {
                        Error::internal(format!("foreign key {} lost its table", fk.name))
                    })?;
                    referencing_row_written(txn, def, fk, parent, e.old.as_ref(), new)?;
                }
            }
            if defer {
                txn.defer_ri(e);
            }
        }
    }
    Err(Error::ProgramLimitExceeded {
        message: "foreign key actions cascade more than 1000 levels deep".into(),
    })
}

/// When the deferred checks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deferred {
    /// COMMIT: every pending check.
    AtCommit,
    /// `SET CONSTRAINTS … IMMEDIATE`: the checks of the keys no longer deferred; the others
    /// stay pending.
    NowImmediate,
}

/// The checks of deferred foreign keys (INITIALLY DEFERRED, or `SET CONSTRAINTS … DEFERRED`),
/// against the rows as the transaction has them now (a row written and then deleted or fixed
/// later is not held against it). Their referential actions are NO ACTION (the others ran
/// with the statement).
pub(crate) fn enforce_deferred(ctx: &ExecCtx<'_>, txn: &mut Txn, when: Deferred) -> Result<()> {
    let events: Vec<RiEvent> = txn.take_deferred_ri();
    if events.is_empty() {
        return Ok(());
    }
    let catalog = txn.catalog();
    // Whether the check of key `fk` of table `table` runs now, or is still to wait.
    let due = |txn: &Txn, table, fk: &ForeignKeyDef| {
        fk.deferrable && (when == Deferred::AtCommit || !txn.fk_deferred(table, fk))
    };
    let waits = |txn: &Txn, table, fk: &ForeignKeyDef| {
        fk.deferrable && when == Deferred::NowImmediate && txn.fk_deferred(table, fk)
    };
    for e in events {
        let Some(def) = catalog.table_by_id(e.table) else {
            continue;
        };
        let mut still_deferred = false;
        if let Some(old) = &e.old {
            let action = |fk: &ForeignKeyDef| {
                if e.new.is_some() {
                    fk.on_update
                } else {
                    fk.on_delete
                }
            };
            for (child, fk) in catalog.referencing(def.id) {
                // Only the check waits; CASCADE and SET … ran with the statement.
                if action(fk) != FkAction::NoAction {
                    continue;
                }
                if due(txn, child.id, fk) {
                    referenced_key_changed(ctx, txn, def, old, e.new.as_ref(), child, fk)?;
                } else if waits(txn, child.id, fk) {
                    still_deferred = true;
                }
            }
        }
        if let Some(new) = &e.new {
            // The row as it is now, by its primary key.
            let pk: Vec<Value> = def.primary_key.iter().map(|&p| new[p].clone()).collect();
            if let Some(current) = txn.get(def, &pk)? {
                for fk in &def.foreign_keys {
                    if due(txn, def.id, fk) {
                        let parent = catalog.table_by_id(fk.ref_table).ok_or_else(|| {
                            Error::internal(format!("foreign key {} lost its table", fk.name))
                        })?;
                        referencing_row_written(txn, def, fk, parent, None, &current)?;
                    } else if waits(txn, def.id, fk) {
                        still_deferred = true;
                    }
                }
            }
        }
        if still_deferred {
            txn.defer_ri(e);
        }
    }
    Ok(())
}

/// Positions in `def.columns` of the columns with ids `ids`.
pub(crate) fn positions(def: &TableDef, ids: &[u32]) -> Result<Vec<usize>> {
    ids.iter()
        .map(|&id| {
            def.column_position(id).ok_or_else(|| {
                Error::internal(format!(
                    "a foreign key names a column table {} lacks",
                    def.name
                ))
            })
        })
        .collect()
}

/// The unique key of `parent` that `ref_positions` make up (its primary key, or a unique
/// index), as that key's column positions; None if there is none.
pub(crate) fn unique_key(parent: &TableDef, ref_positions: &[usize]) -> Option<ReferencedKey> {
    let same = |cols: &[usize]| {
        cols.len() == ref_positions.len() && cols.iter().all(|c| ref_positions.contains(c))
    };
    let pk_declared = !parent.primary_key.iter().any(|&p| parent.columns[p].hidden);
    if pk_declared && same(&parent.primary_key) {
        return Some(ReferencedKey {
            index: None,
            columns: parent.primary_key.clone(),
        });
    }
    parent
        .indexes
        .iter()
        .find(|i| i.unique && i.is_plain_and_total() && same(&i.columns))
        .map(|i| ReferencedKey {
            index: Some(i.id),
            columns: i.columns.clone(),
        })
}

/// A referenced table's key: None for its primary key, else a unique index; its columns in
/// the key's order.
pub(crate) struct ReferencedKey {
    index: Option<IndexId>,
    columns: Vec<usize>,
}

impl ReferencedKey {
    /// The key's index id: 0 for the primary key.
    pub(crate) fn index_id(&self) -> IndexId {
        self.index.unwrap_or(0)
    }

    /// `values` (one per referenced column, in the foreign key's order) in the key's order.
    fn order(&self, ref_positions: &[usize], values: &[Value]) -> Vec<Value> {
        self.columns
            .iter()
            .map(|c| {
                ref_positions
                    .iter()
                    .position(|p| p == c)
                    .map(|i| values[i].clone())
                    .unwrap_or(Value::Null)
            })
            .collect()
    }

    /// Whether a row of `parent` has this key (values in the key's order).
    fn exists(&self, txn: &Txn, parent: &TableDef, key: &[Value]) -> Result<bool> {
        Ok(match self.index {
            None => txn.get(parent, key)?.is_some(),
            Some(id) => !txn
                .reader()
                .index_scan(parent, id, &KeyRange::prefix(key.to_vec()), None, None, 1)?
                .rows
                .is_empty(),
        })
    }
}

/// Whether a referencing column of type `from` can hold the referenced column's values of
/// type `to` (and the other way): equal key encodings after `coerce`.
pub(crate) fn compatible(from: DataType, to: DataType) -> bool {
    use DataType::*;
    let int = |t: DataType| matches!(t, Int16 | Int32 | Int64);
    let text = |t: DataType| matches!(t, Text | Varchar(_));
    match (from, to) {
        (a, b) if int(a) && int(b) => true,
        (a, b) if text(a) && text(b) => true,
        (Numeric { scale: a, .. }, Numeric { scale: b, .. }) => a == b,
        (a, b) => a == b,
    }
}

/// `v` as a value of a column of type `to` (see `compatible`); None if it cannot be one (an
/// integer out of the narrower type's range: no row can have it).
fn coerce(v: &Value, to: DataType) -> Option<Value> {
    let wide = match v {
        Value::Int16(i) => i64::from(*i),
        Value::Int32(i) => i64::from(*i),
        Value::Int64(i) => *i,
        other => return Some(other.clone()),
    };
    match to {
        DataType::Int16 => i16::try_from(wide).ok().map(Value::Int16),
        DataType::Int32 => i32::try_from(wide).ok().map(Value::Int32),
        DataType::Int64 => Some(Value::Int64(wide)),
        _ => Some(v.clone()),
    }
}

/// `Key (a, b)=(1, 2)` of `row`'s columns at `positions`.
fn key_text(def: &TableDef, positions: &[usize], row: &[Value]) -> String {
    let names: Vec<&str> = positions
        .iter()
        .map(|&p| def.columns[p].name.as_str())
        .collect();
    let values: Vec<String> = positions
        .iter()
        .map(|&p| format_value(Some(def.columns[p].data_type), &row[p]))
        .collect();
    format!("Key ({})=({})", names.join(", "), values.join(", "))
}

/// `row` of `child` (an existing row, when a foreign key is added) references a row of
/// `parent`, or has a NULL in its key.
pub(crate) fn check_reference(
    txn: &mut Txn,
    child: &TableDef,
    fk: &ForeignKeyDef,
    parent: &TableDef,
    row: &Row,
) -> Result<()> {
    referencing_row_written(txn, child, fk, parent, None, row)
}

/// A row of `child` was inserted, or updated: its key, if not NULL and new, must exist in
/// `parent`.
fn referencing_row_written(
    txn: &mut Txn,
    child: &TableDef,
    fk: &ForeignKeyDef,
    parent: &TableDef,
    old: Option<&Row>,
    new: &Row,
) -> Result<()> {
    let cols = positions(child, &fk.columns)?;
    // MATCH SIMPLE: a key with a NULL in it references nothing.
    if cols.iter().any(|&c| new[c].is_null()) {
        return Ok(());
    }
    if old.is_some_and(|old| cols.iter().all(|&c| old[c] == new[c])) {
        return Ok(());
    }
    let refs = positions(parent, &fk.ref_columns)?;
    let key = unique_key(parent, &refs)
        .ok_or_else(|| Error::internal(format!("foreign key {} lost its unique key", fk.name)))?;
    let values: Option<Vec<Value>> = cols
        .iter()
        .zip(&refs)
        .map(|(&c, &r)| coerce(&new[c], parent.columns[r].data_type))
        .collect();
    let key_values = values.map(|v| key.order(&refs, &v));
    if let Some(key_values) = key_values {
        if key.exists(txn, parent, &key_values)? {
            txn.fk_reference(parent.id, &key_values);
            return Ok(());
        }
    }
    Err(Error::Detailed {
        code: "23503",
        message: format!(
            "insert or update on table \"{}\" violates foreign key constraint \"{}\"",
            child.name, fk.name
        ),
        detail: Some(format!(
            "{} is not present in table \"{}\".",
            key_text(child, &cols, new),
            parent.name
        )),
        hint: None,
        object: ErrorObject::constraint(&child.name, &fk.name),
    })
}

/// A row of `parent` was deleted (`new` None) or updated: if the key `fk` references changed
/// and no row has it any more, its referencing rows in `child` are dealt with as `fk` says.
fn referenced_key_changed(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    parent: &TableDef,
    old: &Row,
    new: Option<&Row>,
    child: &TableDef,
    fk: &ForeignKeyDef,
) -> Result<()> {
    let refs = positions(parent, &fk.ref_columns)?;
    if refs.iter().any(|&r| old[r].is_null()) {
        return Ok(());
    }
    if new.is_some_and(|new| refs.iter().all(|&r| old[r] == new[r])) {
        return Ok(());
    }
    let action = if new.is_some() {
        fk.on_update
    } else {
        fk.on_delete
    };
    let key = unique_key(parent, &refs)
        .ok_or_else(|| Error::internal(format!("foreign key {} lost its unique key", fk.name)))?;
    let old_values: Vec<Value> = refs.iter().map(|&r| old[r].clone()).collect();
    let key_values = key.order(&refs, &old_values);
    // NO ACTION looks at the end of the statement: a key another row took meanwhile (an
    // UPDATE that shifts keys) is still there for its referencing rows.
    if action != FkAction::Restrict && key.exists(txn, parent, &key_values)? {
        return Ok(());
    }
    txn.fk_release(parent.id, &key_values);
    let cols = positions(child, &fk.columns)?;
    let child_values: Option<Vec<Value>> = old_values
        .iter()
        .zip(&cols)
        .map(|(v, &c)| coerce(v, child.columns[c].data_type))
        .collect();
    let Some(child_values) = child_values else {
        return Ok(());
    };
    let rows = referencing_rows(txn, child, &cols, &child_values)?;
    if rows.is_empty() {
        return Ok(());
    }
    let set = |values: &dyn Fn(usize, usize) -> Result<Value>| -> Result<Vec<(Row, Row)>> {
        rows.iter()
            .map(|r| {
                let mut updated = r.clone();
                for (i, &c) in cols.iter().enumerate() {
                    updated[c] = values(i, c)?;
                }
                Ok((r.clone(), updated))
            })
            .collect()
    };
    // The rows the action changes are locked as an UPDATE or DELETE of them would lock them.
    if !matches!(action, FkAction::NoAction | FkAction::Restrict) {
        let locked: Vec<&Row> = rows.iter().collect();
        crate::row_lock::lock_for_write_blocking(ctx.shared, txn, child, &locked)?;
    }
    let updates = match (action, new) {
        (FkAction::NoAction | FkAction::Restrict, _) => {
            return Err(Error::Detailed {
                code: "23503",
                message: format!(
                    "update or delete on table \"{}\" violates foreign key constraint \"{}\" on table \"{}\"",
                    parent.name, fk.name, child.name
                ),
                detail: Some(format!(
                    "{} is still referenced from table \"{}\".",
                    key_text(parent, &refs, old),
                    child.name
                )),
                hint: None,
                object: ErrorObject::constraint(&child.name, &fk.name),
            })
        }
        (FkAction::Cascade, None) => {
            for r in &rows {
                txn.delete(child, r)?;
            }
            return Ok(());
        }
        (FkAction::Cascade, Some(new)) => set(&|i, c| {
            coerce(&new[refs[i]], child.columns[c].data_type).ok_or_else(|| {
                Error::NumericOutOfRange {
                    message: format!("value out of range for column \"{}\"", child.columns[c].name),
                }
            })
        })?,
        (FkAction::SetNull, _) => set(&|_, _| Ok(Value::Null))?,
        (FkAction::SetDefault, _) => set(&|_, c| {
            Ok(crate::eval::default_values(ctx, child, c, 1)?
                .pop()
                .unwrap_or(Value::Null))
        })?,
    };
    let new_rows: Vec<Row> = updates.iter().map(|(_, n)| n.clone()).collect();
    constraints::check(ctx, child, &new_rows)?;
    for (old_row, new_row) in updates {
        txn.update(child, &old_row, new_row)?;
    }
    // A default that is the key being deleted is not "unchanged": it must still exist.
    if action == FkAction::SetDefault && fk.ref_table == parent.id {
        for row in &new_rows {
            referencing_row_written(txn, child, fk, parent, None, row)?;
        }
    }
    Ok(())
}

/// Rows of `child` whose columns at `cols` equal `values` (NULLs never do): through its primary
/// key or an index that starts with those columns if there is one, else a scan of the table.
fn referencing_rows(
    txn: &Txn,
    child: &TableDef,
    cols: &[usize],
    values: &[Value],
) -> Result<Vec<Row>> {
    let leading = |key: &[usize]| {
        key.len() >= cols.len() && key[..cols.len()].iter().all(|k| cols.contains(k))
    };
    let prefix = |key: &[usize]| -> Vec<Value> {
        key[..cols.len()]
            .iter()
            .map(|k| {
                cols.iter()
                    .position(|c| c == k)
                    .map(|i| values[i].clone())
                    .unwrap_or(Value::Null)
            })
            .collect()
    };
    let reader = txn.reader();
    let (index, range) = if leading(&child.primary_key) {
        (None, KeyRange::prefix(prefix(&child.primary_key)))
    } else if let Some(i) = child
        .indexes
        .iter()
        .find(|i| i.is_plain_and_total() && leading(&i.columns))
    {
        (Some(i.id), KeyRange::prefix(prefix(&i.columns)))
    } else {
        (None, KeyRange::full())
    };
    let mut rows = Vec::new();
    let mut resume: Option<Vec<u8>> = None;
    loop {
        let batch = match index {
            None => reader.scan(child, &range, resume.as_deref(), None, SCAN_BATCH)?,
            Some(id) => {
                reader.index_scan(child, id, &range, resume.as_deref(), None, SCAN_BATCH)?
            }
        };
        rows.extend(
            batch
                .rows
                .into_iter()
                .filter(|r| cols.iter().zip(values).all(|(&c, v)| r[c] == *v)),
        );
        match batch.resume {
            Some(r) => resume = Some(r),
            None => return Ok(rows),
        }
    }
}
