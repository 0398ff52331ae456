//! PostgreSQL's integer semantics on DataFusion plans, as two analyzer rules around DataFusion's:
//!
//! ```text
//!   IntLiterals ─► DataFusion's rules (type coercion, …) ─► CheckedArithmetic
//! ```
//!
//! - An integer literal that fits in 32 bits is `int4`, as in PostgreSQL (DataFusion makes every
//!   integer literal `Int64`): `SELECT 1` is int4, `SELECT 2147483648` int8.
//! - `+`, `-` and `*` on integers fail with 22003 (`integer out of range`) instead of wrapping.
//! - A cast of a numeric or float to an integer rounds (half away from zero) instead of truncating.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Union, Values, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::error::{to_df, Error};

type Rule = Arc<dyn AnalyzerRule + Send + Sync>;

/// `rules` (DataFusion's and the catalogs') with Weft's integer, date/time input (datetime_in.rs),
/// `trunc` scale (numeric_types.rs) and `char(n)` (bpchar.rs) rules around them.
pub(crate) fn analyzer_rules(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = vec![
        Arc::new(IntLiterals),
        Arc::new(crate::numeric_types::TruncScale),
    ];
    out.extend(rules);
    out.push(Arc::new(crate::datetime_in::DateTimeInput));
    out.push(Arc::new(crate::bpchar::BpcharSemantics));
    out.push(Arc::new(CheckedArithmetic));
    out
}

/// Rewrites the expressions of every node (subqueries included), keeping output names.
pub(crate) fn rewrite_plan(
    plan: LogicalPlan,
    f: &dyn Fn(Expr, &DFSchema) -> DfResult<Transformed<Expr>>,
) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        if let LogicalPlan::Union(u) = node {
            return narrow_union(u).map(Transformed::yes);
        }
        // A LIMIT's count must stay Int64; VALUES keeps the schema it was planned with.
        // Types below may have changed: every node's schema is recomputed.
        if matches!(node, LogicalPlan::Limit(_) | LogicalPlan::Values(_)) {
            return node.recompute_schema().map(Transformed::yes);
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
        t.map_data(|p| p.recompute_schema())
    })
    .map(|t| t.data)
}

/// A union's column planned `Int64` is `Int32` when every input's is (rewritten literals: `SELECT 1
/// UNION ALL SELECT 2` is int4); the union keeps its names, qualifiers and metadata.
fn narrow_union(u: Union) -> DfResult<LogicalPlan> {
    let fields = u
        .schema
        .iter()
        .enumerate()
        .map(|(i, (qualifier, f))| {
            let narrowed = f.data_type() == &DataType::Int64
                && u.inputs.iter().all(|p| {
                    p.schema()
                        .fields()
                        .get(i)
                        .is_some_and(|g| g.data_type() == &DataType::Int32)
                });
            let f = if narrowed {
                Arc::new(f.as_ref().clone().with_data_type(DataType::Int32))
            } else {
                Arc::clone(f)
            };
            (qualifier.cloned(), f)
        })
        .collect();
    let schema = DFSchema::new_with_metadata(fields, u.schema.metadata().clone())?;
    Ok(LogicalPlan::Union(Union {
        inputs: u.inputs,
        schema: Arc::new(schema),
    }))
}

/// A VALUES column of integer literals that all fit in 32 bits is `Int32` (`VALUES (1), (2)` is
/// int4 in PostgreSQL); a column with anything else (an expression, a parameter, NULL, a larger
/// number) keeps the type it was planned with.
fn narrow_values(v: Values) -> DfResult<Transformed<LogicalPlan>> {
    let small = |e: &Expr| matches!(e, Expr::Literal(ScalarValue::Int64(Some(n)), _) if i32::try_from(*n).is_ok());
    let columns: Vec<usize> = (0..v.schema.fields().len())
        .filter(|&i| {
            v.schema.field(i).data_type() == &DataType::Int64
                && v.values.iter().all(|row| row.get(i).is_some_and(small))
        })
        .collect();
    if columns.is_empty() || v.values.is_empty() {
        return Ok(Transformed::no(LogicalPlan::Values(v)));
    }
    let values = v
        .values
        .into_iter()
        .map(|row| {
            row.into_iter()
                .enumerate()
                .map(|(i, e)| match e {
                    Expr::Literal(ScalarValue::Int64(Some(n)), meta) if columns.contains(&i) => {
                        Expr::Literal(ScalarValue::Int32(i32::try_from(n).ok()), meta)
                    }
                    other => other,
                })
                .collect()
        })
        .collect();
    let fields = v
        .schema
        .iter()
        .enumerate()
        .map(|(i, (qualifier, f))| {
            let f = if columns.contains(&i) {
                Arc::new(f.as_ref().clone().with_data_type(DataType::Int32))
            } else {
                Arc::clone(f)
            };
            (qualifier.cloned(), f)
        })
        .collect();
    let schema = DFSchema::new_with_metadata(fields, v.schema.metadata().clone())?;
    Ok(Transformed::yes(LogicalPlan::Values(Values {
        schema: Arc::new(schema),
        values,
    })))
}

#[derive(Debug)]
struct IntLiterals;

impl AnalyzerRule for IntLiterals {
    fn name(&self) -> &str {
        "weft_int_literals"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        // A recursive CTE's work table keeps the types it was planned with: leave it as it is.
        let mut recursive = false;
        plan.apply_with_subqueries(|p| {
            recursive |= matches!(p, LogicalPlan::RecursiveQuery(_));
            Ok(if recursive {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })?;
        if recursive {
            return Ok(plan);
        }
        let plan = plan
            .transform_up_with_subqueries(|node| match node {
                LogicalPlan::Values(v) => narrow_values(v),
                other => Ok(Transformed::no(other)),
            })?
            .data;
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
        rewrite_plan(plan, &checked_node)
    }
}

/// Applies PostgreSQL's integer rules to a whole expression already coerced against `schema` (the
/// point fast path plans its SET expressions outside the analyzer).
pub(crate) fn checked_expr(e: Expr, schema: &DFSchema) -> DfResult<Expr> {
    e.transform_up(|x| checked_node(x, schema)).map(|t| t.data)
}

/// Functions whose result PostgreSQL types `integer`.
const INT4_ARRAY_FUNCTIONS: &[&str] = &[
    "array_length",
    "cardinality",
    "array_position",
    "array_ndims",
    "array_lower",
    "array_upper",
];

/// One node of `CheckedArithmetic`: rounding integer casts, numeric division, checked `+ - *`.
fn checked_node(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let e = match e {
        Expr::Cast(c) if is_int(c.field.data_type()) => {
            let from = c.expr.get_type(schema).ok();
            return Ok(if from.as_ref().is_some_and(is_fractional) {
                Transformed::yes(Expr::Cast(datafusion::logical_expr::expr::Cast {
                    expr: Box::new(Expr::ScalarFunction(ScalarFunction::new_udf(
                        Arc::new(ScalarUDF::new_from_impl(RoundToInteger {
                            signature: Signature::any(1, Volatility::Immutable),
                        })),
                        vec![*c.expr],
                    ))),
                    field: c.field,
                }))
            } else {
                Transformed::no(Expr::Cast(c))
            });
        }
        // An array as text is PostgreSQL's literal (`{1,2}`), not Arrow's (`[1, 2]`), and
        // floats, timestamps and intervals PostgreSQL's text (`1 day`, not Arrow's `1 days`);
        // int2vector and oidvector keep their own form.
        Expr::Cast(c)
            if c.field.data_type() == &DataType::Utf8
                && c.expr.to_field(schema).is_ok_and(|(_, f)| {
                    crate::array_text::needs_pg_text(f.data_type())
                        && !f
                            .metadata()
                            .get(crate::pgtype::PG_TYPE_KEY)
                            .is_some_and(|t| t.ends_with("vector"))
                }) =>
        {
            return Ok(Transformed::yes(Expr::ScalarFunction(
                ScalarFunction::new_udf(crate::array_text::udf(), vec![*c.expr]),
            )));
        }
        // Array sizes and positions are int4 in PostgreSQL; DataFusion's are UInt64.
        Expr::ScalarFunction(f)
            if INT4_ARRAY_FUNCTIONS.contains(&f.name())
                && expr_type(&Expr::ScalarFunction(f.clone()), schema)
                    == Some(DataType::UInt64) =>
        {
            return Ok(Transformed::yes(
                Expr::ScalarFunction(f).cast_to(&DataType::Int32, schema)?,
            ));
        }
        other => other,
    };
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return Ok(Transformed::no(e));
    };
    let types = (expr_type(&left, schema), expr_type(&right, schema));
    // date - date is a number of days: int4 in PostgreSQL, Int64 in DataFusion.
    if op == Operator::Minus && matches!(&types, (Some(DataType::Date32), Some(DataType::Date32))) {
        let days = Expr::BinaryExpr(BinaryExpr { left, op, right });
        return Ok(Transformed::yes(days.cast_to(&DataType::Int32, schema)?));
    }
    if op == Operator::Divide {
        if let (Some(l), Some(r)) = &types {
            let decimal = |t: &DataType| matches!(t, DataType::Decimal128(..));
            if (decimal(l) || decimal(r)) && (decimal(l) || is_int(l)) && (decimal(r) || is_int(r))
            {
                let as_decimal = |e: Expr, t: &DataType| {
                    if decimal(t) {
                        e
                    } else {
                        e.cast_to(&DataType::Decimal128(20, 0), schema)
                            .unwrap_or_else(|_| e_null())
                    }
                };
                let dec = |t: &DataType| {
                    if decimal(t) {
                        t.clone()
                    } else {
                        DataType::Decimal128(20, 0)
                    }
                };
                return Ok(Transformed::yes(crate::numeric_div::call(
                    as_decimal(*left, l),
                    &dec(l),
                    as_decimal(*right, r),
                    &dec(r),
                )));
            }
        }
    }
    if op == Operator::Divide {
        if let (Some(l), Some(r)) = &types {
            let float = |t: &DataType| matches!(t, DataType::Float32 | DataType::Float64);
            let checked = matches!(right.as_ref(), Expr::ScalarFunction(f) if f.name() == "weft_float_divisor");
            if (float(l) || float(r)) && !checked {
                return Ok(Transformed::yes(crate::math::float_divide(*left, *right)));
            }
        }
    }
    let checked = match op {
        Operator::Plus => Some(Op::Add),
        Operator::Minus => Some(Op::Sub),
        Operator::Multiply => Some(Op::Mul),
        _ => None,
    };
    match (checked, types) {
        (Some(op), (Some(l), Some(r))) if is_int(&l) && l == r => Ok(Transformed::yes(
            Expr::ScalarFunction(ScalarFunction::new_udf(op.udf(), vec![*left, *right])),
        )),
        _ => Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
            left,
            op,
            right,
        }))),
    }
}

/// The type of `e`, without `get_type` where a shortcut is sure. For a function, `get_type`
/// builds the function's field, named by formatting the whole subtree, and asks each argument
/// the same: on a chain of n checked `+` that is O(n²) for one node and O(n³) for the rewrite
/// of the chain, which visits every node (400 terms took 11 s to plan).
pub(crate) fn expr_type(e: &Expr, schema: &DFSchema) -> Option<DataType> {
    match e {
        // `Checked::return_type`: the type of its first operand.
        Expr::ScalarFunction(f) if is_checked(f.name()) => {
            f.args.first().and_then(|a| expr_type(a, schema))
        }
        // As `get_type` does, from the operands' types.
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer::new(
                &expr_type(left, schema)?,
                op,
                &expr_type(right, schema)?,
            )
            .get_result_type()
            .ok()
        }
        _ => e.get_type(schema).ok(),
    }
}

/// Whether `name` is one of the checked integer operators (`Checked`).
pub(crate) fn is_checked(name: &str) -> bool {
    matches!(name, "weft_int_add" | "weft_int_sub" | "weft_int_mul")
}

fn e_null() -> Expr {
    Expr::Literal(ScalarValue::Decimal128(None, 20, 0), None)
}

fn is_fractional(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Float32 | DataType::Float64 | DataType::Decimal128(..)
    )
}

/// Rounds to an integral value of the same type as PostgreSQL's casts to integer do: numeric
/// half away from zero, float half to even (`rint`: `2.5::float8::int` is 2).
#[derive(Debug, PartialEq, Eq, Hash)]
struct RoundToInteger {
    signature: Signature,
}

impl ScalarUDFImpl for RoundToInteger {
    fn name(&self) -> &str {
        "weft_round_to_integer"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Float64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        use datafusion::arrow::array::{AsArray, Decimal128Array};
        use datafusion::arrow::datatypes::{Decimal128Type, Float32Type, Float64Type};
        let Some(arg) = args.args.first() else {
            return Err(to_df(Error::internal("round without an operand")));
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let a = arg.clone().into_array(args.number_rows)?;
        let out: ArrayRef = match a.data_type() {
            DataType::Float64 => Arc::new(
                a.as_primitive::<Float64Type>()
                    .unary::<_, Float64Type>(f64::round_ties_even),
            ) as ArrayRef,
            DataType::Float32 => Arc::new(
                a.as_primitive::<Float32Type>()
                    .unary::<_, Float32Type>(f32::round_ties_even),
            ),
            DataType::Decimal128(p, s) if *s > 0 => {
                let unit = 10i128.pow(u32::from(s.unsigned_abs()));
                let rounded: Decimal128Array = a
                    .as_primitive::<Decimal128Type>()
                    .unary::<_, Decimal128Type>(|v| {
                        let q = v / unit;
                        let r = v % unit;
                        let q = if r.abs() * 2 >= unit {
                            q + v.signum()
                        } else {
                            q
                        };
                        q.saturating_mul(unit)
                    });
                Arc::new(rounded.with_precision_and_scale(*p, *s)?)
            }
            _ => a,
        };
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
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
            return Err(to_df(Error::internal(
                "integer operator without two operands",
            )));
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
