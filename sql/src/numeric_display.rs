//! Unconstrained `numeric` shown at each value's own scale.
//!
//! PostgreSQL's numeric keeps a display scale per value (`1.5` prints `1.5`, `100` prints `100`,
//! whatever else the column holds). Arrow decimals have one scale per column, so Weft holds an
//! unconstrained `numeric` column, and a `numeric[]` cast, at a fixed scale (16) that says
//! nothing about the value. Such fields carry the metadata key [`KEY`]; at the output their
//! values are sent as the text of the value at its smallest exact scale (trailing fractional
//! zeros dropped), which the front end sends as numeric in either format.
//!
//! That is PostgreSQL's display for every value whose own scale has no trailing zero: integers,
//! and literals written without trailing zeros (`100`, `1.5`, `0.000001`), which is what an
//! unconstrained column is usually given. It differs where PostgreSQL kept trailing zeros that
//! Weft could not record (`'1.50'` inserted prints `1.5`, PostgreSQL `1.50`). Expressions of
//! known scale (literals, `numeric(p,s)` columns, division) are unmarked and keep theirs.
//!
//! ```text
//!   stored numeric (38,16) ──arrow_field──► Decimal128(38,16) + KEY
//!   weft_numeric(non-decimal), ::numeric[] ─► marked result field
//!   output schema field marked ──► [`stream`], [`output`]: the column as text at its own scale
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::metadata::FieldMetadata;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ExprSchema, Result as DfResult};
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, ExprSchemable, Filter, LogicalPlan, Operator, Projection,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use futures::StreamExt;

use crate::error::{to_df, Error, Result};
use crate::session::{QueryOutput, RowStream};

/// Field metadata key: the decimal values of this field have no fixed display scale.
pub(crate) const KEY: &str = "weft.numeric_scale";
const OWN: &str = "own";

/// `f` marked as holding values displayed at their own scale.
pub(crate) fn mark(f: Field) -> Field {
    let mut metadata = f.metadata().clone();
    metadata.insert(KEY.to_string(), OWN.to_string());
    f.with_metadata(metadata)
}

pub(crate) fn is_marked(f: &Field) -> bool {
    f.metadata().get(KEY).map(String::as_str) == Some(OWN)
}

/// `(unscaled, scale)` with trailing fractional zeros dropped.
pub(crate) fn own_scale(mut v: i128, mut scale: i8) -> (i128, i8) {
    while scale > 0 && v % 10 == 0 {
        v /= 10;
        scale -= 1;
    }
    (v, scale)
}

fn text(v: i128, scale: i8) -> String {
    let (v, scale) = own_scale(v, scale);
    crate::convert::format_decimal(v, scale)
}

fn decimal_text(a: &dyn Array) -> Option<StringArray> {
    let DataType::Decimal128(_, scale) = a.data_type() else {
        return None;
    };
    let d = a.as_primitive_opt::<Decimal128Type>()?;
    Some(d.iter().map(|v| v.map(|v| text(v, *scale))).collect())
}

/// A marked column as text at each value's own scale; None if it is not a decimal (list).
fn convert(a: &ArrayRef) -> Result<Option<ArrayRef>> {
    if let Some(s) = decimal_text(a.as_ref()) {
        return Ok(Some(Arc::new(s)));
    }
    let Some(list) = a.as_list_opt::<i32>() else {
        return Ok(None);
    };
    let Some(values) = decimal_text(list.values().as_ref()) else {
        return Ok(None);
    };
    let item = Arc::new(Field::new("item", DataType::Utf8, true));
    let out = ListArray::try_new(
        item,
        list.offsets().clone(),
        Arc::new(values),
        list.nulls().cloned(),
    )
    .map_err(Error::from)?;
    Ok(Some(Arc::new(out)))
}

/// The marked columns of an output schema.
fn marked(schema: &Schema) -> Vec<usize> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| is_marked(f))
        .map(|(i, _)| i)
        .collect()
}

/// `batch` with its marked columns (`cols`) as text.
fn apply(batch: RecordBatch, cols: &[usize]) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = batch.columns().to_vec();
    for &i in cols {
        let (Some(column), Some(field)) = (columns.get_mut(i), fields.get_mut(i)) else {
            continue;
        };
        if let Some(text) = convert(column)? {
            *field = field.clone().with_data_type(text.data_type().clone());
            *column = text;
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(Error::from)
}

/// Batches of `schema` with their marked columns as text.
pub(crate) fn batches(schema: &Schema, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    let cols = marked(schema);
    if cols.is_empty() {
        return Ok(batches);
    }
    batches.into_iter().map(|b| apply(b, &cols)).collect()
}

/// `stream` (of `schema`) with its marked columns as text.
pub(crate) fn stream(schema: &SchemaRef, stream: RowStream) -> RowStream {
    let cols = marked(schema);
    if cols.is_empty() {
        return stream;
    }
    Box::pin(stream.map(move |b| b.and_then(|b| apply(b, &cols))))
}

/// A statement's rows with the marked columns of each batch (by the batch's own schema) as
/// text: for results built in memory (RETURNING, the point fast path).
pub(crate) fn output(out: QueryOutput) -> QueryOutput {
    match out {
        QueryOutput::Rows {
            fields,
            stream,
            command,
        } => QueryOutput::Rows {
            fields,
            stream: Box::pin(stream.map(|b| {
                b.and_then(|b| {
                    let cols = marked(&b.schema());
                    if cols.is_empty() {
                        Ok(b)
                    } else {
                        apply(b, &cols)
                    }
                })
            })),
            command,
        },
        other => other,
    }
}

/// Marks the projected expressions computed from marked values without fixing a scale
/// (`balance - 101`, `-u`, `coalesce(u, 0)`, `CASE … THEN u END`): Arrow gives them a scale
/// derived from 16 that, like the column's, says nothing about the values. Runs on a planned
/// statement before analysis; a marked field's name is kept (an alias of its own name). Also
/// marks `min`/`max` of marked values, and casts them to text at their own scale
/// (`u::text`), where Arrow's cast would print all 16 digits.
pub(crate) fn mark_outputs(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let node = text_casts(node)?;
        // A marked projection below changes the fields these nodes pass on.
        let node = match node {
            LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::Union(_) => node.recompute_schema()?,
            LogicalPlan::Aggregate(a) => mark_aggregates(a)?,
            other => other,
        };
        let LogicalPlan::Projection(p) = node else {
            return Ok(Transformed::no(node));
        };
        let schema = Arc::clone(p.input.schema());
        if !p.expr.iter().any(|e| needs_mark(e, &schema)) {
            // Its fields may come marked from below (`SELECT u * 2 … ORDER BY k` projects the
            // marked inner projection's column).
            return LogicalPlan::Projection(p)
                .recompute_schema()
                .map(Transformed::no);
        }
        let exprs: Vec<Expr> = p
            .expr
            .into_iter()
            .map(|e| {
                if needs_mark(&e, &schema) {
                    marked_alias(e)
                } else {
                    e
                }
            })
            .collect();
        Projection::try_new(exprs, p.input)
            .map(LogicalPlan::Projection)
            .map(Transformed::yes)
    })
    .map(|t| t.data)
    .map_err(Error::from)
}

/// `e` under an alias of its own name whose field is marked.
fn marked_alias(e: Expr) -> Expr {
    let metadata = FieldMetadata::new(BTreeMap::from([(KEY.to_string(), OWN.to_string())]));
    match e {
        Expr::Alias(a) => Expr::Alias(a.with_metadata(Some(metadata))),
        e => {
            let name = e.schema_name().to_string();
            e.alias_with_metadata(name, Some(metadata))
        }
    }
}

/// An aggregation whose `min`/`max` of marked values are marked: they are among the values.
fn mark_aggregates(a: Aggregate) -> DfResult<LogicalPlan> {
    let schema = Arc::clone(a.input.schema());
    let chooses = |e: &Expr| match e {
        Expr::AggregateFunction(f) => {
            matches!(f.func.name(), "min" | "max")
                && f.params.args.first().is_some_and(|x| derives(x, &schema))
        }
        _ => false,
    };
    if !a.aggr_expr.iter().any(chooses) {
        return LogicalPlan::Aggregate(a).recompute_schema();
    }
    let aggr_expr = a
        .aggr_expr
        .into_iter()
        .map(|e| if chooses(&e) { marked_alias(e) } else { e })
        .collect();
    Aggregate::try_new(a.input, a.group_expr, aggr_expr).map(LogicalPlan::Aggregate)
}

/// `node` with its casts of marked values to text (`u::text`, `u::varchar(10)`) written at the
/// values' own scale: in a projection (each expression keeps its name) or a filter.
fn text_casts(node: LogicalPlan) -> DfResult<LogicalPlan> {
    match node {
        LogicalPlan::Projection(p) => {
            let schema = Arc::clone(p.input.schema());
            let mut changed = false;
            let mut exprs = Vec::with_capacity(p.expr.len());
            for e in p.expr {
                let name = e.schema_name().to_string();
                let t = text_casts_in(e, &schema)?;
                changed |= t.transformed;
                exprs.push(match t.data {
                    e @ Expr::Alias(_) => e,
                    e if t.transformed => e.alias(name),
                    e => e,
                });
            }
            if !changed {
                return Projection::try_new_with_schema(exprs, p.input, p.schema)
                    .map(LogicalPlan::Projection);
            }
            Projection::try_new(exprs, p.input).map(LogicalPlan::Projection)
        }
        LogicalPlan::Filter(f) => {
            let schema = Arc::clone(f.input.schema());
            if !f.predicate.exists(|e| Ok(marked_text_cast(e, &schema)))? {
                return Ok(LogicalPlan::Filter(f));
            }
            let predicate = text_casts_in(f.predicate, &schema)?.data;
            Filter::try_new(predicate, f.input).map(LogicalPlan::Filter)
        }
        other => Ok(other),
    }
}

fn text_casts_in(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    e.transform_up(|e| {
        if !marked_text_cast(&e, schema) {
            return Ok(Transformed::no(e));
        }
        match e {
            Expr::Cast(c) => Ok(Transformed::yes(text_udf().call(vec![*c.expr]))),
            e => Ok(Transformed::no(e)),
        }
    })
}

/// A cast to text of marked values.
fn marked_text_cast(e: &Expr, schema: &DFSchema) -> bool {
    let Expr::Cast(c) = e else {
        return false;
    };
    matches!(
        c.field.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) && matches!(c.expr.get_type(schema), Ok(DataType::Decimal128(..)))
        && derives(&c.expr, schema)
}

/// A decimal expression of marked values whose own field is not marked.
fn needs_mark(e: &Expr, schema: &DFSchema) -> bool {
    let decimal = matches!(e.get_type(schema), Ok(DataType::Decimal128(..)));
    decimal && !e.to_field(schema).is_ok_and(|(_, f)| is_marked(&f)) && derives(e, schema)
}

/// Whether `e`'s scale comes from marked values only through operations that keep
/// PostgreSQL's display scale rules (`+ - *`, sign, choice among values).
fn derives(e: &Expr, schema: &DFSchema) -> bool {
    match e {
        Expr::Column(c) => schema.field_from_column(c).is_ok_and(|f| is_marked(f)),
        Expr::Alias(a) => derives(&a.expr, schema),
        Expr::BinaryExpr(b) => {
            matches!(b.op, Operator::Plus | Operator::Minus | Operator::Multiply)
                && (derives(&b.left, schema) || derives(&b.right, schema))
        }
        Expr::Negative(x) => derives(x, schema),
        Expr::Case(c) => {
            c.when_then_expr.iter().any(|(_, t)| derives(t, schema))
                || c.else_expr.as_deref().is_some_and(|e| derives(e, schema))
        }
        Expr::ScalarFunction(f) => {
            matches!(
                f.name(),
                "abs" | "coalesce" | "nullif" | "greatest" | "least"
            ) && f.args.iter().any(|a| derives(a, schema))
        }
        _ => false,
    }
}

/// `weft_numeric_array(list)`: the list as it is, its field marked (a `numeric[]` cast).
pub(crate) fn array_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(NumericArray {
        signature: Signature::any(1, Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct NumericArray {
    signature: Signature,
}

impl ScalarUDFImpl for NumericArray {
    fn name(&self) -> &str {
        "weft_numeric_array"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let t = args
            .arg_fields
            .first()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        Ok(Arc::new(mark(Field::new(self.name(), t, true))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        args.args
            .into_iter()
            .next()
            .ok_or_else(|| to_df(Error::internal("weft_numeric_array without an operand")))
    }
}

/// `weft_numeric_text(d)`: a decimal as text at each value's own scale.
pub(crate) fn text_udf() -> Arc<ScalarUDF> {
    crate::functions::udf(
        "weft_numeric_text",
        Signature::any(1, Volatility::Immutable),
        DataType::Utf8,
        None,
        Arc::new(|args| {
            let Some(operand) = args.args.first() else {
                return Err(to_df(Error::internal(
                    "weft_numeric_text without an operand",
                )));
            };
            let a = operand.clone().into_array(args.number_rows.max(1))?;
            let text = decimal_text(a.as_ref())
                .ok_or_else(|| to_df(Error::internal("weft_numeric_text of a non-decimal")))?;
            Ok(ColumnarValue::Array(Arc::new(text)))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Decimal128Array;

    #[test]
    fn own_scale_drops_trailing_fraction_zeros_only() {
        assert_eq!(own_scale(1_000_000, 4), (100, 0));
        assert_eq!(own_scale(15_000, 4), (15, 1));
        assert_eq!(own_scale(0, 16), (0, 0));
        assert_eq!(own_scale(100, 0), (100, 0));
        assert_eq!(text(-12_345_000, 4), "-1234.5");
        assert_eq!(text(1, 6), "0.000001");
    }

    #[test]
    fn marked_columns_become_text() {
        let schema = Schema::new(vec![
            mark(Field::new("u", DataType::Decimal128(38, 16), true)),
            Field::new("n", DataType::Decimal128(10, 2), true),
        ]);
        let unit = 10i128.pow(16);
        let u = Decimal128Array::from(vec![Some(100 * unit), None, Some(unit * 3 / 2)])
            .with_precision_and_scale(38, 16)
            .map(|a| Arc::new(a) as ArrayRef);
        let n = Decimal128Array::from(vec![Some(150), Some(0), None])
            .with_precision_and_scale(10, 2)
            .map(|a| Arc::new(a) as ArrayRef);
        let (Ok(u), Ok(n)) = (u, n) else {
            panic!("arrays");
        };
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![u, n]);
        let out = batch
            .map_err(Error::from)
            .and_then(|b| batches(&schema, vec![b]));
        let Ok([out]) = out.as_deref() else {
            panic!("{out:?}");
        };
        let u = out.column(0).as_string::<i32>();
        assert_eq!(
            u.iter().collect::<Vec<_>>(),
            [Some("100"), None, Some("1.5")]
        );
        assert_eq!(out.column(1).data_type(), &DataType::Decimal128(10, 2));
    }
}
