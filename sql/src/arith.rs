//! PostgreSQL's integer semantics on DataFusion plans, as two analyzer rules around DataFusion's:
//!
//! ```text
//!   IntLiterals ─► DataFusion's rules (type coercion, …) ─► CheckedArithmetic
//! ```
//!
//! - An integer literal that fits in 32 bits is `int4`, as in PostgreSQL (DataFusion makes every
//!   integer literal `Int64`): `SELECT 1` is int4, `SELECT 2147483648` int8.
//! - `+`, `-` and `*` on integers fail with 22003 (`integer out of range`) instead of wrapping.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::error::{to_df, Error};

type Rule = Arc<dyn AnalyzerRule + Send + Sync>;

/// `rules` (DataFusion's and the catalogs') with Weft's integer rules around them.
pub(crate) fn analyzer_rules(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = vec![Arc::new(IntLiterals)];
    out.extend(rules);
    out.push(Arc::new(CheckedArithmetic));
    out
}

/// Rewrites the expressions of every node (subqueries included), keeping output names.
fn rewrite_plan(
    plan: LogicalPlan,
    f: &dyn Fn(Expr, &DFSchema) -> DfResult<Transformed<Expr>>,
) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        // A LIMIT's count must stay Int64; VALUES keeps the schema it was planned with.
        if matches!(node, LogicalPlan::Limit(_) | LogicalPlan::Values(_)) {
            return Ok(Transformed::no(node));
        }
        let preserver = NamePreserver::new(&node);
        let mut schema = merge_schema(&node.inputs());
        if let LogicalPlan::TableScan(ts) = &node {
            if let Ok(source) =
                DFSchema::try_from_qualified_schema(ts.table_name.clone(), &ts.source.schema())
            {
                schema.merge(&source);
            }
        }
        let t = node.map_expressions(|e| {
            let name = preserver.save(&e);
            e.transform_up(|e| f(e, &schema))
                .map(|t| t.update_data(|e| name.restore(e)))
        })?;
        if t.transformed {
            t.map_data(|p| p.recompute_schema())
        } else {
            Ok(t)
        }
    })
    .map(|t| t.data)
}

#[derive(Debug)]
struct IntLiterals;

impl AnalyzerRule for IntLiterals {
    fn name(&self) -> &str {
        "weft_int_literals"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        rewrite_plan(plan, &|e, _| match e {
            Expr::Literal(ScalarValue::Int64(Some(v)), meta) => match i32::try_from(v) {
                Ok(v) => Ok(Transformed::yes(Expr::Literal(
                    ScalarValue::Int32(Some(v)),
                    meta,
                ))),
                Err(_) => Ok(Transformed::no(Expr::Literal(
                    ScalarValue::Int64(Some(v)),
                    meta,
                ))),
            },
            other => Ok(Transformed::no(other)),
        })
    }
}

#[derive(Debug)]
struct CheckedArithmetic;

impl AnalyzerRule for CheckedArithmetic {
    fn name(&self) -> &str {
        "weft_checked_arithmetic"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        rewrite_plan(plan, &|e, schema| {
            let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
                return Ok(Transformed::no(e));
            };
            let checked = match op {
                Operator::Plus => Some(Op::Add),
                Operator::Minus => Some(Op::Sub),
                Operator::Multiply => Some(Op::Mul),
                _ => None,
            };
            let types = (
                left.get_type(schema).ok(),
                right.get_type(schema).ok(),
            );
            match (checked, types) {
                (Some(op), (Some(l), Some(r))) if is_int(&l) && l == r => {
                    Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                        op.udf(),
                        vec![*left, *right],
                    ))))
                }
                _ => Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                }))),
            }
        })
    }
}

fn is_int(t: &DataType) -> bool {
    matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
}

impl Op {
    fn udf(self) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(Checked {
            op: self,
            signature: Signature::any(2, Volatility::Immutable),
        }))
    }
}

/// Integer `+`, `-`, `*` that fail on overflow.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Checked {
    op: Op,
    signature: Signature,
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        match self.op {
            Op::Add => "weft_int_add",
            Op::Sub => "weft_int_sub",
            Op::Mul => "weft_int_mul",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Int64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let [l, r] = args.args.as_slice() else {
            return Err(to_df(Error::internal("integer operator without two operands")));
        };
        let (l, r): (ArrayRef, ArrayRef) = (
            l.clone().into_array(args.number_rows)?,
            r.clone().into_array(args.number_rows)?,
        );
        let out = match self.op {
            Op::Add => numeric::add(&l, &r),
            Op::Sub => numeric::sub(&l, &r),
            Op::Mul => numeric::mul(&l, &r),
        }
        .map_err(|e| match e {
            datafusion::arrow::error::ArrowError::ArithmeticOverflow(_) => {
                to_df(Error::NumericOutOfRange {
                    message: format!("{} out of range", int_name(l.data_type())),
                })
            }
            other => other.into(),
        })?;
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

fn int_name(t: &DataType) -> &'static str {
    match t {
        DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        _ => "bigint",
    }
}
