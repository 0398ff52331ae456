//! `numeric / numeric` with PostgreSQL's result scale (`select_div_scale`): at least 16
//! significant digits, and never fewer fraction digits than either operand. Arrow decimals carry
//! one scale per column, so the scale is exact when both operands are constants and otherwise
//! taken as for operands whose quotient is between 1 and 10000 (the common case). The scale is
//! decided when the division is planned and passed as a third, literal argument, so that constant
//! folding cannot change the result type.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use datafusion::arrow::datatypes::{i256, DataType, Decimal128Type, Field, FieldRef};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use crate::error::{to_df, Error};

const MIN_SIG_DIGITS: i32 = 16;
const MAX_SCALE: i32 = 38;

/// `a / b` on decimal operands (types `ta`, `tb`) as a call of the division function.
pub(crate) fn call(a: Expr, ta: &DataType, b: Expr, tb: &DataType) -> Expr {
    let scale = div_scale(constant(&a), constant(&b), scale_of(ta), scale_of(tb));
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(NumericDiv {
            signature: Signature::any(3, Volatility::Immutable),
        })),
        vec![
            a,
            b,
            Expr::Literal(ScalarValue::Int32(Some(i32::from(scale))), None),
        ],
    ))
}

/// The value of a constant operand (a literal, possibly cast) as (unscaled, scale).
fn constant(e: &Expr) -> Option<(i128, i8)> {
    let v = match e {
        Expr::Literal(v, _) => v.clone(),
        Expr::Cast(c) => match c.expr.as_ref() {
            Expr::Literal(v, _) => v.cast_to(c.field.data_type()).ok()?,
            _ => return None,
        },
        // `1::numeric`: the rewritten cast of a constant keeps its value.
        Expr::ScalarFunction(f) if f.func.name() == "weft_numeric" => {
            return f.args.first().and_then(constant)
        }
        _ => return None,
    };
    match v {
        ScalarValue::Decimal128(Some(n), _, s) => Some((n, s)),
        other => match other.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(Some(n)) => Some((i128::from(n), 0)),
            _ => None,
        },
    }
}

/// Weight (base-10000 digit position) and first base-10000 digit of `n / 10^scale`; (0, 0) for 0.
fn weight_and_first_digit(n: i128, scale: i8) -> (i32, i32) {
    if n == 0 {
        return (0, 0);
    }
    let digits = n.unsigned_abs().to_string();
    let len = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let e = len - 1 - i32::from(scale);
    let weight = e.div_euclid(4);
    let mut first = 0;
    for k in (4 * weight..=e).rev() {
        let index = e - k;
        let d = usize::try_from(index)
            .ok()
            .and_then(|i| digits.as_bytes().get(i))
            .map_or(0, |b| i32::from(b - b'0'));
        first = first * 10 + d;
    }
    (weight, first)
}

/// PostgreSQL's select_div_scale, capped at what a Decimal128 can hold.
fn div_scale(a: Option<(i128, i8)>, b: Option<(i128, i8)>, sa: i8, sb: i8) -> i8 {
    let qweight = match (a, b) {
        (Some(a), Some(b)) => {
            let (w1, f1) = weight_and_first_digit(a.0, a.1);
            let (w2, f2) = weight_and_first_digit(b.0, b.1);
            w1 - w2 - i32::from(f1 <= f2)
        }
        _ => 0,
    };
    let scale = (MIN_SIG_DIGITS - qweight * 4)
        .max(i32::from(sa))
        .max(i32::from(sb))
        .clamp(0, MAX_SCALE);
    i8::try_from(scale).unwrap_or(16)
}

/// `CAST(x AS numeric)` without a precision: Arrow needs a scale, PostgreSQL keeps the value's
/// own. A decimal keeps its type, an integer gets scale 0; other operands get the scale passed
/// by the rewrite (the literal's own, rewrite.rs), else 16 and a display at each value's own
/// scale (numeric_display.rs).
pub(crate) fn unconstrained_cast() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(NumericCast {
        signature: Signature::one_of(
            vec![TypeSignature::Any(1), TypeSignature::Any(2)],
            Volatility::Immutable,
        ),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct NumericCast {
    signature: Signature,
}

impl NumericCast {
    fn target(from: &DataType, scale: Option<i8>) -> DataType {
        match from {
            DataType::Decimal128(..) => from.clone(),
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                DataType::Decimal128(20, 0)
            }
            _ => DataType::Decimal128(38, scale.unwrap_or(16).clamp(0, 38)),
        }
    }
}

impl ScalarUDFImpl for NumericCast {
    fn name(&self) -> &str {
        "weft_numeric"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(Self::target(
            arg_types.first().unwrap_or(&DataType::Null),
            None,
        ))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let scale = match args.scalar_arguments.get(1).copied().flatten() {
            Some(ScalarValue::Int32(Some(s))) => i8::try_from(*s).ok(),
            Some(ScalarValue::Int64(Some(s))) => i8::try_from(*s).ok(),
            _ => None,
        };
        let arg = args.arg_fields.first();
        let from = arg.map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
        let field = Field::new(self.name(), Self::target(&from, scale), true);
        // A decimal keeps its field (and whether its scale is the value's own); an integer has
        // scale 0; anything else without a literal's scale (a float, a text column) gets the
        // default scale, which says nothing about the value.
        Ok(Arc::new(match &from {
            DataType::Decimal128(..) => {
                field.with_metadata(arg.map(|f| f.metadata().clone()).unwrap_or_default())
            }
            t if t.is_integer() || scale.is_some() => field,
            _ => crate::numeric_display::mark(field),
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let target = args.return_field.data_type().clone();
        let Some(arg) = args.args.first() else {
            return Err(to_df(Error::internal("numeric cast without an operand")));
        };
        if let Some(special) = special_value(arg)? {
            return Err(to_df(Error::FeatureNotSupported {
                // Arrow decimals have no NaN or infinities.
                feature: format!("numeric '{special}'"),
            }));
        }
        arg.cast_to(&target, None)
    }
}

/// The first `NaN` or `[+-]Infinity` among string operands, which PostgreSQL's numeric holds.
fn special_value(arg: &ColumnarValue) -> DfResult<Option<String>> {
    let a = arg.clone().into_array(1)?;
    if !matches!(
        a.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return Ok(None);
    }
    let a = datafusion::arrow::compute::cast(&a, &DataType::Utf8)?;
    Ok(a.as_string::<i32>().iter().flatten().find_map(|s| {
        let t = s.trim().to_ascii_lowercase();
        let t = t.trim_start_matches(['+', '-']);
        matches!(t, "nan" | "inf" | "infinity").then(|| s.trim().to_string())
    }))
}

fn scale_of(t: &DataType) -> i8 {
    match t {
        DataType::Decimal128(_, s) => *s,
        _ => 0,
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct NumericDiv {
    signature: Signature,
}

impl ScalarUDFImpl for NumericDiv {
    fn name(&self) -> &str {
        "weft_numeric_div"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        let (sa, sb) = (
            arg_types.first().map_or(0, scale_of),
            arg_types.get(1).map_or(0, scale_of),
        );
        Ok(DataType::Decimal128(38, div_scale(None, None, sa, sb)))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let sa = args
            .arg_fields
            .first()
            .map_or(0, |f| scale_of(f.data_type()));
        let sb = args
            .arg_fields
            .get(1)
            .map_or(0, |f| scale_of(f.data_type()));
        let scale = match args.scalar_arguments.get(2).copied().flatten() {
            Some(ScalarValue::Int32(Some(s))) => i8::try_from(*s).ok(),
            _ => None,
        };
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Decimal128(38, scale.unwrap_or_else(|| div_scale(None, None, sa, sb))),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let DataType::Decimal128(_, rscale) = args.return_field.data_type().clone() else {
            return Err(to_df(Error::internal(
                "numeric division without a decimal result",
            )));
        };
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let [l, r, _] = args.args.as_slice() else {
            return Err(to_df(Error::internal(
                "numeric division without two operands",
            )));
        };
        let l: ArrayRef = l.clone().into_array(args.number_rows)?;
        let r: ArrayRef = r.clone().into_array(args.number_rows)?;
        let (sa, sb) = (scale_of(l.data_type()), scale_of(r.data_type()));
        let (l, r) = (
            l.as_primitive::<Decimal128Type>(),
            r.as_primitive::<Decimal128Type>(),
        );
        let mut out = Vec::with_capacity(l.len());
        for i in 0..l.len() {
            if l.is_null(i) || r.is_null(i) {
                out.push(None);
                continue;
            }
            out.push(Some(
                divide(l.value(i), sa, r.value(i), sb, rscale).map_err(to_df)?,
            ));
        }
        let out: ArrayRef =
            Arc::new(Decimal128Array::from(out).with_precision_and_scale(38, rscale)?);
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// `a / b` rounded half away from zero to `rscale` fraction digits, unscaled.
fn divide(a: i128, sa: i8, b: i128, sb: i8, rscale: i8) -> crate::Result<i128> {
    if b == 0 {
        return Err(Error::DivisionByZero);
    }
    let overflow = || Error::NumericOutOfRange {
        message: "value overflows numeric format".into(),
    };
    // a/10^sa / (b/10^sb) * 10^rscale = a * 10^(rscale + sb - sa) / b
    let shift = i32::from(rscale) + i32::from(sb) - i32::from(sa);
    let ten = i256::from_i128(10);
    let mut num = i256::from_i128(a);
    let mut den = i256::from_i128(b);
    let pow = |n: i32| -> crate::Result<i256> {
        ten.checked_pow(u32::try_from(n).map_err(|_| overflow())?)
            .ok_or_else(overflow)
    };
    if shift >= 0 {
        num = num.checked_mul(pow(shift)?).ok_or_else(overflow)?;
    } else {
        den = den.checked_mul(pow(-shift)?).ok_or_else(overflow)?;
    }
    let q = num.checked_div(den).ok_or_else(overflow)?;
    let rem = num.checked_rem(den).ok_or_else(overflow)?;
    let twice = rem
        .wrapping_abs()
        .checked_mul(i256::from_i128(2))
        .ok_or_else(overflow)?;
    let negative = (num < i256::ZERO) != (den < i256::ZERO);
    let q = if twice >= den.wrapping_abs() {
        if negative {
            q - i256::ONE
        } else {
            q + i256::ONE
        }
    } else {
        q
    };
    q.to_i128()
        .filter(|v| v.unsigned_abs() < 10u128.pow(38))
        .ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_division_scales() {
        // 10 / 4 and 1 / 3 (SELECT 10::numeric / 4, 1::numeric / 3)
        assert_eq!(div_scale(Some((10, 0)), Some((4, 0)), 0, 0), 16);
        assert_eq!(div_scale(Some((1, 0)), Some((3, 0)), 0, 0), 20);
        assert_eq!(div_scale(Some((123456, 0)), Some((3, 0)), 0, 0), 12);
        assert_eq!(divide(10, 0, 4, 0, 16).ok(), Some(25_000_000_000_000_000));
        assert_eq!(divide(-2, 0, 3, 0, 2).ok(), Some(-67));
        assert_eq!(
            divide(1, 0, 0, 0, 2).map_err(|e| e.sqlstate()),
            Err("22012")
        );
    }
}
