//! A catalog table as DataFusion sees it: a fixed schema and a function that builds its rows from
//! the session's current catalog each time the table is scanned, so DDL shows at once.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Int16Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session as DfSession;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::model::Model;
use super::PgContext;
use crate::pgtype::{PG_TYPE_KEY, UTC};

/// The SQL type of a catalog column, as PostgreSQL declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Oid,
    Name,
    /// The one-byte `"char"` type.
    Char,
    Text,
    /// `varchar`, the base type of information_schema's `character_data` and `yes_or_no`.
    Varchar,
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    TimestampTz,
    OidArray,
    /// `int2[]`.
    Int2Array,
    /// `int2vector`: shown as `1 2`, subscripted from 0 in PostgreSQL.
    Int2Vector,
    /// `oidvector`.
    OidVector,
    TextArray,
    CharArray,
}

impl Col {
    fn field(self, name: &str) -> Field {
        let item = |t: ArrowType| Arc::new(Field::new("item", t, true));
        let (t, pg) = match self {
            Col::Oid => (ArrowType::Int64, Some("oid")),
            Col::Name => (ArrowType::Utf8, Some("name")),
            Col::Char => (ArrowType::Utf8, Some("char")),
            Col::Text => (ArrowType::Utf8, None),
            Col::Varchar => (ArrowType::Utf8, Some("varchar")),
            Col::Bool => (ArrowType::Boolean, None),
            Col::Int2 => (ArrowType::Int16, None),
            Col::Int4 => (ArrowType::Int32, None),
            Col::Int8 => (ArrowType::Int64, None),
            Col::Float4 => (ArrowType::Float32, None),
            Col::TimestampTz => (
                ArrowType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
                None,
            ),
            Col::OidArray => (ArrowType::List(item(ArrowType::Int64)), Some("_oid")),
            Col::Int2Array => (ArrowType::List(item(ArrowType::Int16)), None),
            Col::Int2Vector => (ArrowType::List(item(ArrowType::Int16)), Some("int2vector")),
            Col::OidVector => (ArrowType::List(item(ArrowType::Int64)), Some("oidvector")),
            Col::TextArray => (ArrowType::List(item(ArrowType::Utf8)), None),
            Col::CharArray => (ArrowType::List(item(ArrowType::Utf8)), Some("_char")),
        };
        let field = Field::new(name, t, true);
        match pg {
            Some(pg) => {
                field.with_metadata(HashMap::from([(PG_TYPE_KEY.to_string(), pg.to_string())]))
            }
            None => field,
        }
    }
}

/// One value of a catalog row; `From` impls keep the table files short.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
    Float(f64),
    Ints(Vec<i64>),
}

impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(v.to_string())
    }
}

impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(v)
    }
}

impl From<char> for Cell {
    fn from(v: char) -> Self {
        Cell::Text(v.to_string())
    }
}

impl From<bool> for Cell {
    fn from(v: bool) -> Self {
        Cell::Bool(v)
    }
}

macro_rules! int_cell {
    ($($t:ty),*) => {$(
        impl From<$t> for Cell {
            fn from(v: $t) -> Self {
                Cell::Int(i64::from(v))
            }
        }
    )*};
}
int_cell!(i16, i32, i64, u32);

impl From<usize> for Cell {
    fn from(v: usize) -> Self {
        Cell::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Self {
        v.map_or(Cell::Null, Into::into)
    }
}

/// Builds a row from a list of values of mixed types.
#[macro_export]
macro_rules! pg_row {
    ($($v:expr),* $(,)?) => { vec![$($crate::pg_catalog::table::Cell::from($v)),*] };
}

pub type Row = Vec<Cell>;
pub type Rows = fn(&Model) -> Vec<Row>;

/// A catalog table definition: name, columns and how its rows are built.
#[derive(Clone, Copy)]
pub struct TableDef {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Col)],
    pub rows: Rows,
}

impl TableDef {
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(n, c)| c.field(n))
                .collect::<Vec<_>>(),
        ))
    }
}

/// No rows: the catalogs of features Weft does not have (policies, triggers, publications…).
pub fn no_rows(_: &Model) -> Vec<Row> {
    Vec::new()
}

pub(crate) struct SystemTable {
    def: TableDef,
    schema: SchemaRef,
    ctx: Arc<PgContext>,
}

impl SystemTable {
    pub fn new(def: TableDef, ctx: Arc<PgContext>) -> Self {
        SystemTable {
            schema: def.schema(),
            def,
            ctx,
        }
    }
}

impl fmt::Debug for SystemTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SystemTable({})", self.def.name)
    }
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let model = self.ctx.model().await;
        let rows = (self.def.rows)(&model);
        let batch = to_batch(&self.schema, self.def.columns, &rows)?;
        let table = MemTable::try_new(Arc::clone(&self.schema), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}

/// Rows into one record batch; a value of the wrong kind for its column becomes NULL.
pub fn to_batch(
    schema: &SchemaRef,
    columns: &[(&str, Col)],
    rows: &[Row],
) -> datafusion::common::Result<RecordBatch> {
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, col))| column(*col, rows.iter().map(|r| r.get(i))))
        .collect();
    Ok(RecordBatch::try_new(Arc::clone(schema), arrays)?)
}

fn column<'a>(col: Col, cells: impl Iterator<Item = Option<&'a Cell>>) -> ArrayRef {
    fn text(c: Option<&Cell>) -> Option<String> {
        match c {
            Some(Cell::Text(s)) => Some(s.clone()),
            _ => None,
        }
    }
    fn int(c: Option<&Cell>) -> Option<i64> {
        match c {
            Some(Cell::Int(i)) => Some(*i),
            _ => None,
        }
    }
    match col {
        Col::Name | Col::Char | Col::Text | Col::Varchar => {
            let mut b = StringBuilder::new();
            cells.for_each(|c| b.append_option(text(c)));
            Arc::new(b.finish())
        }
        Col::Oid | Col::Int8 => {
            let mut b = Int64Builder::new();
            cells.for_each(|c| b.append_option(int(c)));
            Arc::new(b.finish())
        }
        Col::Int4 => {
            let mut b = Int32Builder::new();
            cells.for_each(|c| b.append_option(int(c).and_then(|v| i32::try_from(v).ok())));
            Arc::new(b.finish())
        }
        Col::Int2 => {
            let mut b = Int16Builder::new();
            cells.for_each(|c| b.append_option(int(c).and_then(|v| i16::try_from(v).ok())));
            Arc::new(b.finish())
        }
        Col::Bool => {
            let mut b = BooleanBuilder::new();
            cells.for_each(|c| {
                b.append_option(match c {
                    Some(Cell::Bool(v)) => Some(*v),
                    _ => None,
                })
            });
            Arc::new(b.finish())
        }
        Col::Float4 => {
            let mut b = Float32Builder::new();
            cells.for_each(|c| {
                b.append_option(match c {
                    Some(Cell::Float(v)) => Some(*v as f32),
                    Some(Cell::Int(v)) => Some(*v as f32),
                    _ => None,
                })
            });
            Arc::new(b.finish())
        }
        Col::TimestampTz => {
            let mut b = TimestampMicrosecondBuilder::new().with_timezone(UTC);
            cells.for_each(|c| b.append_option(int(c)));
            Arc::new(b.finish())
        }
        Col::OidArray | Col::OidVector => {
            let mut b = ListBuilder::new(Int64Builder::new());
            for c in cells {
                match c {
                    Some(Cell::Ints(v)) => b.append_value(v.iter().map(|i| Some(*i))),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Col::Int2Array | Col::Int2Vector => {
            let mut b = ListBuilder::new(Int16Builder::new());
            for c in cells {
                match c {
                    Some(Cell::Ints(v)) => b.append_value(v.iter().map(|i| i16::try_from(*i).ok())),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        // Text arrays (ACLs, options) are always NULL in Weft's catalogs.
        Col::TextArray | Col::CharArray => {
            let mut b = ListBuilder::new(StringBuilder::new());
            cells.for_each(|_| b.append_null());
            Arc::new(b.finish())
        }
    }
}
