//! Access paths: which primary-key or index ranges a scan's filters allow, and the batch generator
//! that reads them from a transaction's snapshot.

use std::any::Any;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use datafusion::physical_plan::memory::LazyBatchGenerator;
use parking_lot::RwLock;
use weft_storage::{DataType, IndexId, KeyRange, TableDef, TxnReader, Value};

use crate::convert::{rows_to_batch, scalar_to_value};
use crate::error::to_df;
use crate::pgtype::arrow_type;

/// At most this many point/range reads from one IN list cross product; past it, scan instead.
const MAX_RANGES: usize = 1024;

#[derive(Debug, Clone)]
pub(crate) enum Access {
    Full,
    Pk(Vec<KeyRange>),
    Index {
        id: IndexId,
        name: String,
        ranges: Vec<KeyRange>,
    },
}

#[derive(Default, Clone)]
struct ColumnBounds {
    /// Equality candidates (`=` or `IN`); None when unconstrained.
    eq: Option<Vec<Value>>,
    lower: Option<(Value, bool)>,
    upper: Option<(Value, bool)>,
}

/// Picks the best access path for a conjunction of filters.
pub(crate) fn choose_access(def: &TableDef, filters: &[Expr]) -> Access {
    let mut bounds: Vec<ColumnBounds> = vec![ColumnBounds::default(); def.columns.len()];
    for f in filters {
        for conjunct in split_conjunction(f) {
            collect(def, conjunct, &mut bounds);
        }
    }
    let pk = ranges_for(&def.primary_key, &bounds);
    let mut best: Option<(usize, Access)> = pk.map(|(score, r)| (score, Access::Pk(r)));
    // An expression index keys on `lower(c)`, not on `c`: no filter on `c` can use it.
    for index in def.indexes.iter().filter(|i| i.is_plain_and_total()) {
        if let Some((score, ranges)) = ranges_for(&index.columns, &bounds) {
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((
                    score,
                    Access::Index {
                        id: index.id,
                        name: index.name.clone(),
                        ranges,
                    },
                ));
            }
        }
    }
    best.map(|(_, a)| a).unwrap_or(Access::Full)
}

fn literal_value(def: &TableDef, col: usize, lit: &ScalarValue) -> Option<Value> {
    let t = def.columns[col].data_type;
    if lit.is_null() {
        return None;
    }
    let lt = lit.data_type();
    let exact = lt == arrow_type(t)
        || (lt.is_integer() && matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64));
    if !exact || matches!(t, DataType::Char(_) | DataType::Float32 | DataType::Float64) {
        return None;
    }
    scalar_to_value(lit, t).ok()
}

fn column_of(def: &TableDef, e: &Expr) -> Option<usize> {
    match e {
        Expr::Column(c) => def.column_index(&c.name),
        _ => None,
    }
}

fn collect(def: &TableDef, e: &Expr, bounds: &mut [ColumnBounds]) {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (col, lit, op) = match (left.as_ref(), right.as_ref()) {
                (l, Expr::Literal(v, _)) => match column_of(def, l) {
                    Some(c) => (c, v, *op),
                    None => return,
                },
                (Expr::Literal(v, _), r) => match (column_of(def, r), op.swap()) {
                    (Some(c), Some(op)) => (c, v, op),
                    _ => return,
                },
                _ => return,
            };
            let Some(value) = literal_value(def, col, lit) else {
                return;
            };
            let b = &mut bounds[col];
            match op {
                Operator::Eq => b.eq = Some(vec![value]),
                Operator::Gt => b.lower = Some((value, false)),
                Operator::GtEq => b.lower = Some((value, true)),
                Operator::Lt => b.upper = Some((value, false)),
                Operator::LtEq => b.upper = Some((value, true)),
                _ => {}
            }
        }
        Expr::InList(list) if !list.negated => {
            let Some(col) = column_of(def, &list.expr) else {
                return;
            };
            let mut values = Vec::with_capacity(list.list.len());
            for item in &list.list {
                match item {
                    Expr::Literal(v, _) => match literal_value(def, col, v) {
                        Some(v) => values.push(v),
                        None if v.is_null() => {}
                        None => return,
                    },
                    _ => return,
                }
            }
            bounds[col].eq = Some(values);
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let Some(col) = column_of(def, expr) else {
                return;
            };
            if let (Expr::Literal(l, _), Expr::Literal(h, _)) = (low.as_ref(), high.as_ref()) {
                if let (Some(l), Some(h)) = (literal_value(def, col, l), literal_value(def, col, h))
                {
                    bounds[col].lower = Some((l, true));
                    bounds[col].upper = Some((h, true));
                }
            }
        }
        _ => {}
    }
}

/// Key ranges over `key_cols` the bounds allow, with a score (how many key columns are pinned).
fn ranges_for(key_cols: &[usize], bounds: &[ColumnBounds]) -> Option<(usize, Vec<KeyRange>)> {
    let mut prefixes: Vec<Vec<Value>> = vec![Vec::new()];
    let mut pinned = 0;
    for &col in key_cols {
        let Some(eq) = &bounds[col].eq else { break };
        if prefixes.len() * eq.len() > MAX_RANGES {
            break;
        }
        prefixes = prefixes
            .iter()
            .flat_map(|p| {
                eq.iter().map(move |v| {
                    let mut p = p.clone();
                    p.push(v.clone());
                    p
                })
            })
            .collect();
        pinned += 1;
    }
    let next = key_cols.get(pinned).map(|&c| &bounds[c]);
    let range_bounds = next.filter(|b| b.lower.is_some() || b.upper.is_some());
    if pinned == 0 && range_bounds.is_none() {
        return None;
    }
    let ranges = prefixes
        .into_iter()
        .map(|prefix| {
            let bound = |side: &Option<(Value, bool)>| -> Bound<Vec<Value>> {
                match side {
                    Some((v, inclusive)) => {
                        let mut k = prefix.clone();
                        k.push(v.clone());
                        if *inclusive {
                            Bound::Included(k)
                        } else {
                            Bound::Excluded(k)
                        }
                    }
                    None if prefix.is_empty() => Bound::Unbounded,
                    None => Bound::Included(prefix.clone()),
                }
            };
            match range_bounds {
                Some(b) => KeyRange {
                    lower: bound(&b.lower),
                    upper: bound(&b.upper),
                },
                None => KeyRange {
                    lower: Bound::Included(prefix.clone()),
                    upper: Bound::Included(prefix),
                },
            }
        })
        .collect();
    // Two points per pinned column, one more for a range on the next.
    Some((pinned * 2 + usize::from(range_bounds.is_some()), ranges))
}

/// Reads an access path's ranges batch by batch; holds no iterator between batches.
pub(crate) struct ScanGenerator {
    reader: TxnReader,
    def: Arc<TableDef>,
    access: Access,
    projection: Vec<usize>,
    types: Vec<DataType>,
    schema: SchemaRef,
    limit: Option<usize>,
    batch_size: usize,
    range: usize,
    resume: Option<Vec<u8>>,
    produced: usize,
}

impl ScanGenerator {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        reader: TxnReader,
        def: Arc<TableDef>,
        access: Access,
        projection: Vec<usize>,
        types: Vec<DataType>,
        schema: SchemaRef,
        limit: Option<usize>,
        batch_size: usize,
    ) -> Self {
        ScanGenerator {
            reader,
            def,
            access,
            projection,
            types,
            schema,
            limit,
            batch_size: batch_size.max(1),
            range: 0,
            resume: None,
            produced: 0,
        }
    }

    fn next_rows(&mut self) -> weft_storage::Result<Option<Vec<weft_storage::Row>>> {
        let full = KeyRange {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
        };
        loop {
            let want = match self.limit {
                Some(l) if self.produced >= l => return Ok(None),
                Some(l) => (l - self.produced).min(self.batch_size),
                None => self.batch_size,
            };
            let (range, index) = match &self.access {
                Access::Full if self.range == 0 => (&full, None),
                Access::Pk(ranges) => match ranges.get(self.range) {
                    Some(r) => (r, None),
                    None => return Ok(None),
                },
                Access::Index { id, ranges, .. } => match ranges.get(self.range) {
                    Some(r) => (r, Some(*id)),
                    None => return Ok(None),
                },
                Access::Full => return Ok(None),
            };
            let resume = self.resume.as_deref();
            let batch = match index {
                None => self
                    .reader
                    .scan(&self.def, range, resume, Some(&self.projection), want)?,
                Some(id) => self.reader.index_scan(
                    &self.def,
                    id,
                    range,
                    resume,
                    Some(&self.projection),
                    want,
                )?,
            };
            match batch.resume {
                Some(r) => self.resume = Some(r),
                None => {
                    self.resume = None;
                    self.range += 1;
                }
            }
            if !batch.rows.is_empty() {
                self.produced += batch.rows.len();
                return Ok(Some(batch.rows));
            }
        }
    }
}

impl fmt::Debug for ScanGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for ScanGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = &self.def.name;
        match &self.access {
            Access::Full => write!(f, "WeftScan: {table} full scan"),
            Access::Pk(r) if r.iter().all(|r| is_point(r, self.def.primary_key.len())) => {
                write!(f, "WeftScan: {table} primary key point ({} keys)", r.len())
            }
            Access::Pk(r) => write!(
                f,
                "WeftScan: {table} primary key range ({} ranges)",
                r.len()
            ),
            Access::Index { name, ranges, .. } => {
                write!(
                    f,
                    "WeftScan: {table} index {name} range ({} ranges)",
                    ranges.len()
                )
            }
        }
    }
}

/// A range that pins every key column.
fn is_point(r: &KeyRange, key_len: usize) -> bool {
    matches!((&r.lower, &r.upper), (Bound::Included(a), Bound::Included(b)) if a == b && a.len() == key_len)
}

impl LazyBatchGenerator for ScanGenerator {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn generate_next_batch(&mut self) -> datafusion::common::Result<Option<RecordBatch>> {
        let rows = self.next_rows().map_err(|e| to_df(e.into()))?;
        match rows {
            None => Ok(None),
            Some(rows) => rows_to_batch(Arc::clone(&self.schema), &self.types, &rows)
                .map(Some)
                .map_err(|e| DataFusionError::External(Box::new(e))),
        }
    }

    fn reset_state(&self) -> Arc<RwLock<dyn LazyBatchGenerator>> {
        Arc::new(RwLock::new(ScanGenerator::new(
            self.reader.clone(),
            Arc::clone(&self.def),
            self.access.clone(),
            self.projection.clone(),
            self.types.clone(),
            Arc::clone(&self.schema),
            self.limit,
            self.batch_size,
        )))
    }
}
