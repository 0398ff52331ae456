//! PostgreSQL's result types of numeric expressions where DataFusion's differ:
//!
//! - `real` arithmetic with an integer or numeric operand is `double precision` (operator
//!   resolution prefers `float8`: `1.5::real * 2`), while `real * real` stays `real`. DataFusion
//!   keeps `Float32`; `RealPromotionPlanner` casts the `real` operand to `Float64` when the
//!   expression is planned (so that the statement's result type is right).
//! - `trunc(numeric, n)` has scale `n` (`trunc(2.789, 1)` is `2.7`); DataFusion keeps the
//!   operand's scale (`2.700`). The `TruncScale` analyzer rule, before type coercion (which
//!   would hide a literal `n` under a cast), casts the result; only the scale changes, which
//!   the statement's result type (`numeric`) does not carry.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;
use datafusion::sql::sqlparser::ast::BinaryOperator;

#[derive(Debug)]
pub(crate) struct TruncScale;

impl AnalyzerRule for TruncScale {
    fn name(&self) -> &str {
        "weft_trunc_scale"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        crate::arith::rewrite_plan(plan, &|e, schema| match e {
            Expr::ScalarFunction(f) if f.func.name() == "trunc" => trunc_scale(f, schema),
            e => Ok(Transformed::no(e)),
        })
    }
}

/// `trunc(numeric[, n])` cast to scale `n` (0 without `n`), when `n` is a constant.
fn trunc_scale(f: ScalarFunction, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let t = f.args.first().and_then(|a| a.get_type(schema).ok());
    let n = match f.args.get(1) {
        None => Some(0),
        Some(Expr::Literal(v, _)) => match v.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(Some(n))) => Some(n),
            _ => None,
        },
        Some(_) => None,
    };
    let e = Expr::ScalarFunction(f);
    Ok(match (t, n) {
        (Some(DataType::Decimal128(p, s)), Some(n)) if n < i64::from(s) => {
            let scale = i8::try_from(n.max(0)).unwrap_or(0);
            Transformed::yes(Expr::Cast(Cast::new(
                Box::new(e),
                DataType::Decimal128(p, scale),
            )))
        }
        _ => Transformed::no(e),
    })
}

fn exact(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..))
}

#[derive(Debug)]
pub(crate) struct RealPromotionPlanner;

impl ExprPlanner for RealPromotionPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let op = match expr.op {
            BinaryOperator::Plus => Operator::Plus,
            BinaryOperator::Minus => Operator::Minus,
            BinaryOperator::Multiply => Operator::Multiply,
            BinaryOperator::Divide => Operator::Divide,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let (lt, rt) = (
            expr.left.get_type(schema).ok(),
            expr.right.get_type(schema).ok(),
        );
        let widen = |e: Expr| Expr::Cast(Cast::new(Box::new(e), DataType::Float64));
        let (left, right) = match (lt, rt) {
            (Some(DataType::Float32), Some(r)) if exact(&r) => (widen(expr.left), expr.right),
            (Some(l), Some(DataType::Float32)) if exact(&l) => (expr.left, widen(expr.right)),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        Ok(PlannerResult::Planned(Expr::BinaryExpr(BinaryExpr::new(
            Box::new(left),
            op,
            Box::new(right),
        ))))
    }
}
