//! `generate_series` in FROM over timestamps: DataFusion's table function takes nanosecond
//! timestamps only, and Weft plans `timestamp` as microseconds (PostgreSQL's precision), so
//! `FROM generate_series('2020-01-01'::timestamp, …, interval '1 day')` failed to plan. The bounds
//! are handed to DataFusion's function in nanoseconds; the rows are timestamps as before.

use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::functions_table::generate_series::GenerateSeriesFunc;
use datafusion::logical_expr::Expr;

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
        GenerateSeriesFunc {}.call_with_args(TableFunctionArgs::new(&exprs, args.session()))
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
