//! PostgreSQL's errors on DataFusion's math functions: `ln`/`log` of zero or a negative number
//! (2201E), `sqrt` of a negative number and undefined powers (2201F), and float division by
//! zero (22012); `round(float8)` rounds half to even, as PostgreSQL's (`rint`) does; `array_length`
//! of an empty array is NULL.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, Float64Type};
use datafusion::common::Result as DfResult;
use datafusion::functions::math;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::error::{to_df, Error};

/// The checked replacements of DataFusion's functions, registered under the same names.
pub(crate) fn udfs() -> Vec<Arc<ScalarUDF>> {
    [
        (math::ln(), Check::Log),
        (math::log(), Check::Log),
        (math::log10(), Check::Log),
        (math::log2(), Check::Log),
        (math::sqrt(), Check::Sqrt),
        (math::power(), Check::Power),
        (math::round(), Check::Rint),
        (math::ceil(), Check::WholeDecimal),
        (math::floor(), Check::WholeDecimal),
        (
            datafusion::functions_nested::length::array_length_udf(),
            Check::EmptyIsNull,
        ),
    ]
    .into_iter()
    .map(|(inner, check)| Arc::new(ScalarUDF::new_from_impl(Checked { inner, check })))
    .collect()
}

/// `l / r` on floats, failing on a zero divisor.
pub(crate) fn float_divide(l: Expr, r: Expr) -> Expr {
    Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
        Box::new(l),
        datafusion::logical_expr::Operator::Divide,
        Box::new(Expr::ScalarFunction(
            datafusion::logical_expr::expr::ScalarFunction::new_udf(
                Arc::new(ScalarUDF::new_from_impl(NonZero {
                    signature: Signature::any(1, Volatility::Immutable),
                })),
                vec![r],
            ),
        )),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Check {
    Log,
    Sqrt,
    Power,
    /// Not a check: `round` of one float argument is `rint` (half to even); numeric's `round`
    /// stays DataFusion's (half away from zero, as PostgreSQL's numeric round).
    Rint,
    /// Not a check: `array_length` of an empty array is NULL in PostgreSQL, 0 in DataFusion (a
    /// non-empty array's length is never 0).
    EmptyIsNull,
    /// Not a check: `ceil`/`floor` of a numeric has scale 0 (`ceil(1.5)` is `2`, not `2.0`).
    WholeDecimal,
}

/// The type of `ceil`/`floor` of a numeric: the same precision, scale 0.
fn whole(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Decimal128(p, s) if *s > 0 => Some(DataType::Decimal128(*p, 0)),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Checked {
    inner: Arc<ScalarUDF>,
    check: Check,
}

fn log_error(message: &str) -> datafusion::error::DataFusionError {
    to_df(Error::InvalidArgumentForLog {
        message: message.into(),
    })
}

fn power_error(message: &str) -> datafusion::error::DataFusionError {
    to_df(Error::InvalidArgumentForPower {
        message: message.into(),
    })
}

/// The arguments as doubles (None where not numeric), for checking.
fn as_doubles(args: &[ColumnarValue], rows: usize) -> DfResult<Vec<Option<Float64Array>>> {
    args.iter()
        .map(|a| {
            let a = a.clone().into_array(rows)?;
            Ok(if a.data_type().is_numeric() {
                Some(
                    cast(&a, &DataType::Float64)?
                        .as_primitive::<Float64Type>()
                        .clone(),
                )
            } else {
                None
            })
        })
        .collect()
}

fn check_log(args: &[Option<Float64Array>]) -> DfResult<()> {
    for a in args.iter().flatten() {
        for v in a.iter().flatten() {
            if v == 0.0 {
                return Err(log_error("cannot take logarithm of zero"));
            }
            if v < 0.0 {
                return Err(log_error("cannot take logarithm of a negative number"));
            }
        }
    }
    // log(b, x) with b = 1 divides by ln(1) = 0.
    if let [Some(base), Some(_)] = args {
        if base.iter().flatten().any(|b| b == 1.0) {
            return Err(to_df(Error::DivisionByZero));
        }
    }
    Ok(())
}

fn check_sqrt(args: &[Option<Float64Array>]) -> DfResult<()> {
    if args
        .iter()
        .flatten()
        .any(|a| a.iter().flatten().any(|v| v < 0.0))
    {
        return Err(power_error("cannot take square root of a negative number"));
    }
    Ok(())
}

fn check_power(args: &[Option<Float64Array>]) -> DfResult<()> {
    let [Some(base), Some(exp)] = args else {
        return Ok(());
    };
    for (b, e) in base.iter().zip(exp.iter()) {
        let (Some(b), Some(e)) = (b, e) else {
            continue;
        };
        if b == 0.0 && e < 0.0 {
            return Err(power_error("zero raised to a negative power is undefined"));
        }
        if b < 0.0 && e.fract() != 0.0 {
            return Err(power_error(
                "a negative number raised to a non-integer power yields a complex result",
            ));
        }
    }
    Ok(())
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        // PostgreSQL's other name for ceil.
        static CEILING: std::sync::LazyLock<Vec<String>> =
            std::sync::LazyLock::new(|| vec!["ceiling".to_string()]);
        if self.inner.name() == "ceil" && self.inner.aliases().is_empty() {
            return CEILING.as_slice();
        }
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        let t = self.inner.return_type(arg_types)?;
        Ok(match self.check {
            Check::WholeDecimal => whole(&t).unwrap_or(t),
            _ => t,
        })
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let field = self.inner.return_field_from_args(args)?;
        Ok(match (self.check, whole(field.data_type())) {
            (Check::WholeDecimal, Some(t)) => Arc::new(field.as_ref().clone().with_data_type(t)),
            _ => field,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        match self.check {
            Check::Log => check_log(&as_doubles(&args.args, rows)?)?,
            Check::Sqrt => check_sqrt(&as_doubles(&args.args, rows)?)?,
            Check::Power => check_power(&as_doubles(&args.args, rows)?)?,
            Check::Rint => {
                if let [value] = args.args.as_slice() {
                    if let Some(rounded) = rint(value)? {
                        return Ok(rounded);
                    }
                }
            }
            Check::WholeDecimal => {
                let result = self.inner.invoke_with_args(args)?.into_array(rows)?;
                return Ok(ColumnarValue::Array(match whole(result.data_type()) {
                    Some(t) => cast(&result, &t)?,
                    None => result,
                }));
            }
            Check::EmptyIsNull => {
                let lengths = self.inner.invoke_with_args(args)?.into_array(rows)?;
                return Ok(ColumnarValue::Array(zero_as_null(&lengths)?));
            }
        }
        self.inner.invoke_with_args(args)
    }
}

/// The lengths with every 0 replaced by NULL.
fn zero_as_null(lengths: &ArrayRef) -> DfResult<ArrayRef> {
    use datafusion::arrow::array::{new_null_array, Int64Array, Scalar};
    use datafusion::arrow::compute::kernels::{cmp, zip};
    let zero = Scalar::new(cast(&Int64Array::from(vec![0]), lengths.data_type())?);
    let is_zero = cmp::eq(lengths, &zero)?;
    let none = new_null_array(lengths.data_type(), lengths.len());
    Ok(zip::zip(&is_zero, &none, lengths)?)
}

/// A float rounded half to even (PostgreSQL's `rint`); None for other types.
fn rint(value: &ColumnarValue) -> DfResult<Option<ColumnarValue>> {
    use datafusion::arrow::datatypes::Float32Type;
    use datafusion::common::ScalarValue;
    Ok(Some(match value {
        ColumnarValue::Scalar(ScalarValue::Float64(v)) => {
            ColumnarValue::Scalar(ScalarValue::Float64(v.map(f64::round_ties_even)))
        }
        ColumnarValue::Scalar(ScalarValue::Float32(v)) => {
            ColumnarValue::Scalar(ScalarValue::Float32(v.map(f32::round_ties_even)))
        }
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Float64 => ColumnarValue::Array(Arc::new(
                a.as_primitive::<Float64Type>()
                    .unary::<_, Float64Type>(f64::round_ties_even),
            )),
            DataType::Float32 => ColumnarValue::Array(Arc::new(
                a.as_primitive::<Float32Type>()
                    .unary::<_, Float32Type>(f32::round_ties_even),
            )),
            _ => return Ok(None),
        },
        ColumnarValue::Scalar(_) => return Ok(None),
    }))
}

/// Passes a float divisor through, failing on zero.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NonZero {
    signature: Signature,
}

impl ScalarUDFImpl for NonZero {
    fn name(&self) -> &str {
        "weft_float_divisor"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Float64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return Err(to_df(Error::internal("float divisor without an operand")));
        };
        let a: ArrayRef = cast(&value.clone().into_array(1)?, &DataType::Float64)?;
        if a.as_primitive::<Float64Type>()
            .iter()
            .flatten()
            .any(|v| v == 0.0)
        {
            return Err(to_df(Error::DivisionByZero));
        }
        Ok(value.clone())
    }
}
