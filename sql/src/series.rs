//! `generate_series` in FROM over timestamps: DataFusion's table function takes nanosecond
//! timestamps only, and Weft plans `timestamp` as microseconds (PostgreSQL's precision), so
//! `FROM generate_series('2020-01-01'::timestamp, …, interval '1 day')` failed to plan. The bounds
//! are handed to DataFusion's function in nanoseconds; the rows are timestamps as before.
//!
//! Over integers whose bounds and step all fit in 32 bits (`generate_series(1, 10)`), the
//! series is int4 as in PostgreSQL (DataFusion's is always int8): its column is cast.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::functions_table::generate_series::GenerateSeriesFunc;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::{CastExpr, Column};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

/// Registered as `generate_series` in place of DataFusion's, which it calls.
#[derive(Debug)]
pub(crate) struct GenerateSeries;

impl TableFunctionImpl for GenerateSeries {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs: Vec<Expr> = args
            .exprs()
            .iter()
            .map(|e| match e {
                Expr::Literal(v, meta) => Expr::Literal(nanoseconds(v), meta.clone()),
                other => other.clone(),
            })
            .collect();
        let series =
            GenerateSeriesFunc {}.call_with_args(TableFunctionArgs::new(&exprs, args.session()))?;
        let int4 = !exprs.is_empty()
            && exprs.iter().all(|e| {
                matches!(e, Expr::Literal(ScalarValue::Int64(Some(n)), _) if i32::try_from(*n).is_ok())
            });
        if !int4 {
            return Ok(series);
        }
        let fields: Vec<Field> = series
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_data_type(DataType::Int32))
            .collect();
        Ok(Arc::new(Int4Series {
            schema: Arc::new(Schema::new(fields)),
            series,
        }))
    }
}

/// An integer series as int4: DataFusion's int8 series with its column cast (the values fit,
/// since the bounds do).
#[derive(Debug)]
struct Int4Series {
    series: Arc<dyn TableProvider>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for Int4Series {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        self.series.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = self.series.scan(state, projection, filters, limit).await?;
        let schema = plan.schema();
        if schema.fields().is_empty() {
            return Ok(plan);
        }
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(f.name(), i));
                let cast: Arc<dyn PhysicalExpr> =
                    Arc::new(CastExpr::new(column, DataType::Int32, None));
                (cast, f.name().clone())
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
    }
}

/// A timestamp in nanoseconds (NULL where it does not fit: beyond the years 1677-2262).
fn nanoseconds(v: &ScalarValue) -> ScalarValue {
    let scaled = |t: &Option<i64>, by: i64| t.and_then(|t| t.checked_mul(by));
    match v {
        ScalarValue::TimestampMicrosecond(t, tz) => {
            ScalarValue::TimestampNanosecond(scaled(t, 1_000), tz.clone())
        }
        ScalarValue::TimestampMillisecond(t, tz) => {
            ScalarValue::TimestampNanosecond(scaled(t, 1_000_000), tz.clone())
        }
        ScalarValue::TimestampSecond(t, tz) => {
            ScalarValue::TimestampNanosecond(scaled(t, 1_000_000_000), tz.clone())
        }
        other => other.clone(),
    }
}

/// Most values `generate_series` in a select list may produce for one batch of rows. There it
/// builds each row's series as one array (then unnested), so `SELECT generate_series(1,
/// 3000000000)` would take tens of gigabytes (and panic past Arrow's offsets) where PostgreSQL
/// streams it; past this it is 54000 and the client is pointed at the FROM form, which streams.
pub(crate) const SELECT_LIST_SERIES_MAX: i128 = 50_000_000;

/// DataFusion's scalar `generate_series` (the select-list form), refusing integer series longer
/// than [`SELECT_LIST_SERIES_MAX`] before building them.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct BoundedSeries {
    inner: datafusion::logical_expr::ScalarUDF,
}

impl BoundedSeries {
    pub(crate) fn udf() -> datafusion::logical_expr::ScalarUDF {
        let inner = datafusion::functions_nested::range::gen_series_udf();
        datafusion::logical_expr::ScalarUDF::new_from_impl(BoundedSeries {
            inner: inner.as_ref().clone(),
        })
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for BoundedSeries {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> DfResult<datafusion::logical_expr::ColumnarValue> {
        let total = integer_series_length(&args.args, args.number_rows)?;
        if total > SELECT_LIST_SERIES_MAX {
            return Err(crate::error::to_df(crate::Error::ProgramLimitExceeded {
                message: format!(
                    "generate_series in a select list would produce {total} values; at most \
                     {SELECT_LIST_SERIES_MAX} are allowed there (use SELECT … FROM \
                     generate_series(…), which streams)"
                ),
            }));
        }
        self.inner.invoke_with_args(args)
    }
}

/// How many values an integer `generate_series` produces over all the rows (0 for other types).
fn integer_series_length(
    args: &[datafusion::logical_expr::ColumnarValue],
    rows: usize,
) -> DfResult<i128> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    let mut columns = Vec::with_capacity(args.len());
    for a in args {
        let array = a.clone().into_array(rows)?;
        let Some(ints) = array.as_primitive_opt::<Int64Type>().cloned() else {
            return Ok(0);
        };
        columns.push(ints);
    }
    let mut total: i128 = 0;
    for row in 0..rows {
        let value = |i: usize| {
            columns
                .get(i)
                .and_then(|c| (!c.is_null(row)).then(|| i128::from(c.value(row))))
        };
        let (start, stop, step) = match columns.len() {
            1 => (Some(0), value(0), Some(1)),
            2 => (value(0), value(1), Some(1)),
            _ => (value(0), value(1), value(2)),
        };
        let (Some(start), Some(stop), Some(step)) = (start, stop, step) else {
            continue;
        };
        if step > 0 && stop >= start {
            total += (stop - start) / step + 1;
        } else if step < 0 && start >= stop {
            total += (start - stop) / -step + 1;
        }
    }
    Ok(total)
}
