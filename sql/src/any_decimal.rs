//! `x = ANY(list)` between decimals of different precision or scale: `price = ANY($1)` with a
//! `numeric(8,2)` column and a `numeric[]` parameter. DataFusion's `array_has` refuses to coerce
//! `List(Decimal128(38, 10))` with `Decimal128(8, 2)`; PostgreSQL compares numerics of any
//! scale. Both sides are cast to one decimal type that holds either, before type coercion.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule; runs before type coercion.
#[derive(Debug, Default)]
pub(crate) struct AnyDecimal;

impl AnalyzerRule for AnyDecimal {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        // Most plans have no `array_has`: leave them without rebuilding every node.
        let mut found = false;
        plan.apply_with_subqueries(|node| {
            node.apply_expressions(|e| {
                found |= e.exists(|x| {
                    Ok(matches!(x, Expr::ScalarFunction(f) if f.name() == "array_has"))
                })?;
                Ok(if found {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })
        })?;
        if !found {
            return Ok(plan);
        }
        crate::arith::rewrite_plan(plan, &widen)
    }

    fn name(&self) -> &str {
        "weft_any_decimal"
    }
}

fn decimal(t: &DataType) -> Option<(u8, i8)> {
    match t {
        DataType::Decimal128(p, s) => Some((*p, *s)),
        _ => None,
    }
}

fn widen(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::ScalarFunction(mut f) = e else {
        return Ok(Transformed::no(e));
    };
    if f.name() != "array_has" || f.args.len() != 2 {
        return Ok(Transformed::no(Expr::ScalarFunction(f)));
    }
    let (list, item) = (f.args[0].get_type(schema), f.args[1].get_type(schema));
    let (Ok(DataType::List(element)), Ok(item)) = (list, item) else {
        return Ok(Transformed::no(Expr::ScalarFunction(f)));
    };
    let (Some((p1, s1)), Some((p2, s2))) = (decimal(element.data_type()), decimal(&item)) else {
        return Ok(Transformed::no(Expr::ScalarFunction(f)));
    };
    if (p1, s1) == (p2, s2) {
        return Ok(Transformed::no(Expr::ScalarFunction(f)));
    }
    let scale = s1.max(s2);
    let integer_digits = (i16::from(p1) - i16::from(s1)).max(i16::from(p2) - i16::from(s2));
    let precision = u8::try_from((integer_digits + i16::from(scale)).clamp(1, 38)).unwrap_or(38);
    let common = DataType::Decimal128(precision, scale);
    let element =
        Field::new_list_field(common.clone(), true).with_metadata(element.metadata().clone());
    let args = std::mem::take(&mut f.args);
    let mut args = args.into_iter();
    let (Some(list), Some(item)) = (args.next(), args.next()) else {
        return Ok(Transformed::no(Expr::ScalarFunction(f)));
    };
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(
            Arc::clone(&f.func),
            vec![
                list.cast_to(&DataType::List(Arc::new(element)), schema)?,
                item.cast_to(&common, schema)?,
            ],
        ),
    )))
}
