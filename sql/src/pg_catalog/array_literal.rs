//! PostgreSQL array literals compared with arrays: `polroles = '{0}'`. PostgreSQL types the
//! string from the other operand; DataFusion cannot compare a list with text. This analyzer rule,
//! which runs before type coercion, parses such a string into a list of the other side's
//! element type.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct ArrayLiterals;

impl AnalyzerRule for ArrayLiterals {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let schema = match node.inputs().as_slice() {
                [input] => input.schema().as_ref().clone(),
                _ => node.schema().as_ref().clone(),
            };
            node.map_expressions(|e| e.transform_up(|e| coerce(e, &schema)))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "weft_array_literals"
    }
}

fn coerce(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return Ok(Transformed::no(e));
    };
    let comparison = matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
    );
    let element = |e: &Expr| match e.get_type(schema) {
        Ok(DataType::List(f)) => Some(f.data_type().clone()),
        _ => None,
    };
    let parsed = |e: &Expr, t: Option<DataType>| match (e, t) {
        (Expr::Literal(ScalarValue::Utf8(Some(s)), _), Some(t)) => {
            parse(s, &t).map(|v| Expr::Literal(v, None))
        }
        _ => None,
    };
    if comparison {
        if let Some(l) = parsed(&left, element(&right)) {
            return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                left: Box::new(l),
                op,
                right,
            })));
        }
        if let Some(r) = parsed(&right, element(&left)) {
            return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                left,
                op,
                right: Box::new(r),
            })));
        }
    }
    Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
        left,
        op,
        right,
    })))
}

/// A one-dimensional array literal (`{1,2}`, `{"a b",NULL}`) as a list of `element`.
pub(crate) fn parse(s: &str, element: &DataType) -> Option<ScalarValue> {
    let items = crate::array_text::array_items(s)?;
    let values = items
        .into_iter()
        .map(|i| match i {
            Some(v) => ScalarValue::try_from_string(v, element).ok(),
            None => ScalarValue::try_from(element).ok(),
        })
        .collect::<Option<Vec<_>>>()?;
    Some(ScalarValue::List(ScalarValue::new_list_nullable(
        &values, element,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_array_literals() {
        let list = |v: Vec<ScalarValue>, t: &DataType| {
            Some(ScalarValue::List(ScalarValue::new_list_nullable(&v, t)))
        };
        assert_eq!(
            parse("{0}", &DataType::Int64),
            list(vec![ScalarValue::Int64(Some(0))], &DataType::Int64)
        );
        assert_eq!(
            parse("{}", &DataType::Int64),
            list(vec![], &DataType::Int64)
        );
        assert_eq!(
            parse("{a, \"b,c\" ,NULL}", &DataType::Utf8),
            list(
                vec![
                    ScalarValue::Utf8(Some("a".into())),
                    ScalarValue::Utf8(Some("b,c".into())),
                    ScalarValue::Utf8(None)
                ],
                &DataType::Utf8
            )
        );
        assert_eq!(parse("{x}", &DataType::Int64), None);
    }
}
