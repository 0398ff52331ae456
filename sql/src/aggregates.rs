//! `avg` and `sum` with PostgreSQL's result types, replacing DataFusion's under the same names
//! (also as window functions):
//!
//! | argument            | `sum`            | `avg`                      |
//! | ------------------- | ---------------- | -------------------------- |
//! | smallint, integer   | bigint           | numeric                    |
//! | bigint              | numeric          | numeric                    |
//! | numeric             | numeric          | numeric                    |
//! | real                | real             | double precision           |
//! | double precision    | double precision | double precision           |
//!
//! `avg` of integers and numerics is the sum divided by the count as numeric division does it
//! (`numeric_div`): rounded half away from zero to at least 16 significant digits. Arrow decimals
//! carry one scale per column, so the scale is the one PostgreSQL gives an average between 1 and
//! 10000 (16, or the argument's scale if larger); PostgreSQL adds 4 fraction digits per factor of
//! 10000 below that and drops as many above it.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Int64Array, ListArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    i256, DataType, Decimal128Type, DecimalType, Field, FieldRef, Int64Type,
};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, ReversedUDAF, Signature,
    Volatility,
};

use crate::error::{to_df, Error};

/// The scale of `avg` over integers, and the least scale of `avg` over numerics.
const AVG_MIN_SCALE: i8 = 16;
const MAX_PRECISION: u8 = 38;

/// `avg` and `sum` as PostgreSQL types them.
pub(crate) fn udafs() -> [Arc<AggregateUDF>; 4] {
    let bool_and = datafusion::functions_aggregate::bool_and_or::bool_and_udaf();
    let var_samp = datafusion::functions_aggregate::variance::var_samp_udaf();
    [
        Arc::new(AggregateUDF::new_from_impl(PgAvg::new())),
        Arc::new(AggregateUDF::new_from_impl(PgSum::new())),
        // `every` is bool_and under the name rewrite.rs gives it (so the column is named `every`).
        Arc::new(bool_and.as_ref().clone().with_aliases(["weft_every"])),
        // `variance` is var_samp, likewise named by rewrite.rs.
        Arc::new(var_samp.as_ref().clone().with_aliases(["weft_variance"])),
    ]
}

fn no_such_function(name: &str, t: &DataType) -> datafusion::error::DataFusionError {
    to_df(Error::UndefinedFunction {
        message: format!(
            "function {name}({}) does not exist",
            crate::pgtype::PgType::from_arrow(t).name()
        ),
    })
}

/// The argument type of `sum` and `avg`, or None where there is no such function. The mapping
/// is idempotent: DataFusion applies it again to arguments it already coerced.
fn numeric_argument(t: &DataType) -> Option<DataType> {
    use DataType::*;
    Some(match t {
        Int8 | Int16 | Int32 | Int64 => t.clone(),
        UInt8 | UInt16 | UInt32 => Int64,
        UInt64 => Decimal128(MAX_PRECISION, 0),
        Decimal128(p, s) => Decimal128(*p, *s),
        Decimal32(p, s) | Decimal64(p, s) | Decimal256(p, s) => {
            Decimal128((*p).min(MAX_PRECISION), *s)
        }
        Float16 | Float32 => Float32,
        Float64 => Float64,
        Null => Int64,
        Duration(_) | Interval(_) => t.clone(),
        _ => return None,
    })
}

/// For a `sum` over `input`: the type DataFusion's sum accumulates it as and the type that
/// returns, where they differ from `input` (integers widen, bigint sums as numeric, real as
/// double precision).
fn sum_widening(input: &DataType) -> Option<(DataType, DataType)> {
    match input {
        DataType::Int8 | DataType::Int16 | DataType::Int32 => {
            Some((DataType::Int64, DataType::Int64))
        }
        DataType::Int64 => Some((
            DataType::Decimal128(MAX_PRECISION, 0),
            DataType::Decimal128(MAX_PRECISION, 0),
        )),
        DataType::Float32 => Some((DataType::Float64, DataType::Float64)),
        _ => None,
    }
}

fn one_argument<'a>(name: &str, types: &'a [DataType]) -> DfResult<&'a DataType> {
    match types {
        [t] => Ok(t),
        _ => Err(to_df(Error::UndefinedFunction {
            message: format!("function {name} takes one argument"),
        })),
    }
}

/// Arguments for DataFusion's accumulator over `input`, returning `output`.
fn with_types(args: &AccumulatorArgs, input: &DataType, output: &DataType) -> [FieldRef; 2] {
    [
        Arc::new(Field::new(args.name, output.clone(), true)),
        Arc::new(Field::new("arg", input.clone(), true)),
    ]
}

// ---- sum

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgSum {
    signature: Signature,
}

impl PgSum {
    fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for PgSum {
    fn name(&self) -> &str {
        "sum"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let t = one_argument("sum", arg_types)?;
        numeric_argument(t)
            .map(|t| vec![t])
            .ok_or_else(|| no_such_function("sum", t))
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match one_argument("sum", arg_types)? {
            DataType::Decimal128(_, s) => Ok(DataType::Decimal128(MAX_PRECISION, *s)),
            DataType::Float32 => Ok(DataType::Float32),
            other => match sum_widening(other) {
                Some((_, ret)) => Ok(ret),
                None => sum_udaf().return_type(std::slice::from_ref(other)),
            },
        }
    }

    /// The sum of unconstrained numerics is shown at its own scale, as they are
    /// (PostgreSQL's sum has the largest scale of its inputs).
    fn return_field(&self, arg_fields: &[FieldRef]) -> DfResult<FieldRef> {
        let types: Vec<DataType> = arg_fields.iter().map(|f| f.data_type().clone()).collect();
        let field = Field::new(self.name(), self.return_type(&types)?, true);
        Ok(Arc::new(match arg_fields.first() {
            Some(f) if crate::numeric_display::is_marked(f) => crate::numeric_display::mark(field),
            _ => field,
        }))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        match widened(&args) {
            Some((fields, input)) => Ok(Box::new(Widened {
                inner: sum_udaf().accumulator(inner_args(&args, &fields))?,
                input,
                output: args.return_type().clone(),
            })),
            None => sum_udaf().accumulator(args),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let input = args.input_fields.first().map(|f| f.data_type().clone());
        if let Some((acc, ret)) = input.as_ref().and_then(sum_widening) {
            let return_field: FieldRef = Arc::new(Field::new(args.name, ret, true));
            let input: Vec<FieldRef> = args
                .input_fields
                .iter()
                .map(|f| Arc::new(f.as_ref().clone().with_data_type(acc.clone())))
                .collect();
            return sum_udaf().state_fields(StateFieldsArgs {
                name: args.name,
                input_fields: &input,
                return_field,
                ordering_fields: args.ordering_fields,
                is_distinct: args.is_distinct,
            });
        }
        sum_udaf().state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        widened(&args).is_none() && sum_udaf().groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        sum_udaf().create_groups_accumulator(args)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        match widened(&args) {
            Some((fields, input)) => Ok(Box::new(Widened {
                inner: sum_udaf().create_sliding_accumulator(inner_args(&args, &fields))?,
                input,
                output: args.return_type().clone(),
            })),
            None => sum_udaf().create_sliding_accumulator(args),
        }
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Identical
    }
}

/// The fields DataFusion's sum is made with where the argument is widened, and the type the
/// argument is cast to.
fn widened(args: &AccumulatorArgs) -> Option<([FieldRef; 2], DataType)> {
    let input = args.expr_fields.first()?.data_type();
    let (acc, ret) = sum_widening(input)?;
    Some((with_types(args, &acc, &ret), acc))
}

fn inner_args<'a>(args: &AccumulatorArgs<'a>, fields: &'a [FieldRef; 2]) -> AccumulatorArgs<'a> {
    AccumulatorArgs {
        return_field: Arc::clone(&fields[0]),
        schema: args.schema,
        ignore_nulls: args.ignore_nulls,
        order_bys: args.order_bys,
        is_reversed: args.is_reversed,
        name: args.name,
        is_distinct: args.is_distinct,
        exprs: args.exprs,
        expr_fields: std::slice::from_ref(&fields[1]),
    }
}

/// DataFusion's sum over the argument cast to `input`, its result cast to `output`.
#[derive(Debug)]
struct Widened {
    inner: Box<dyn Accumulator>,
    input: DataType,
    output: DataType,
}

impl Widened {
    fn cast_input(&self, values: &[ArrayRef]) -> DfResult<Vec<ArrayRef>> {
        values.iter().map(|v| Ok(cast(v, &self.input)?)).collect()
    }
}

impl Accumulator for Widened {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let values = self.cast_input(values)?;
        self.inner.update_batch(&values)
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        self.inner.evaluate()?.cast_to(&self.output)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.inner.merge_batch(states)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let values = self.cast_input(values)?;
        self.inner.retract_batch(&values)
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
}

// ---- avg

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgAvg {
    signature: Signature,
}

impl PgAvg {
    fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The scale of the argument `avg` computes exactly over (integers as scale 0), or None for
/// the types DataFusion's own `avg` handles.
fn exact_scale(t: &DataType) -> Option<i8> {
    match t {
        DataType::Int64 => Some(0),
        DataType::Decimal128(_, s) => Some(*s),
        _ => None,
    }
}

impl AggregateUDFImpl for PgAvg {
    fn name(&self) -> &str {
        "avg"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let t = one_argument("avg", arg_types)?;
        Ok(vec![match numeric_argument(t) {
            Some(DataType::Int8 | DataType::Int16 | DataType::Int32) => DataType::Int64,
            Some(DataType::Float32) => DataType::Float64,
            Some(DataType::Interval(_)) | None => return Err(no_such_function("avg", t)),
            Some(t) => t,
        }])
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        let t = one_argument("avg", arg_types)?;
        match exact_scale(t) {
            Some(s) => Ok(DataType::Decimal128(MAX_PRECISION, s.max(AVG_MIN_SCALE))),
            None => avg_udaf().return_type(std::slice::from_ref(t)),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let Some(input) = args.expr_fields.first().map(|f| f.data_type()) else {
            return avg_udaf().accumulator(args);
        };
        match (exact_scale(input), args.return_type()) {
            (Some(input_scale), DataType::Decimal128(_, scale)) => Ok(Box::new(ExactAvg {
                input_scale,
                scale: *scale,
                sum: 0,
                count: 0,
                distinct: args.is_distinct.then(HashSet::new),
            })),
            _ => avg_udaf().accumulator(args),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let Some(input_scale) = args
            .input_fields
            .first()
            .and_then(|f| exact_scale(f.data_type()))
        else {
            return avg_udaf().state_fields(args);
        };
        let sum = DataType::Decimal128(MAX_PRECISION, input_scale);
        Ok(if args.is_distinct {
            vec![Arc::new(Field::new_list(
                format_state_name(args.name, "avg distinct"),
                Field::new_list_field(sum, true),
                false,
            ))]
        } else {
            vec![
                Arc::new(Field::new(
                    format_state_name(args.name, "count"),
                    DataType::Int64,
                    true,
                )),
                Arc::new(Field::new(format_state_name(args.name, "sum"), sum, true)),
            ]
        })
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        let exact = args
            .expr_fields
            .first()
            .is_some_and(|f| exact_scale(f.data_type()).is_some());
        !exact && avg_udaf().groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        avg_udaf().create_groups_accumulator(args)
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Identical
    }
}

/// `avg` over integers or numerics: an exact sum and a count, divided at the end.
#[derive(Debug)]
struct ExactAvg {
    /// Scale of the values summed (0 for integers).
    input_scale: i8,
    /// Scale of the result.
    scale: i8,
    sum: i128,
    count: i64,
    /// The values seen, for `avg(DISTINCT …)`.
    distinct: Option<HashSet<i128>>,
}

fn overflow() -> datafusion::error::DataFusionError {
    to_df(Error::NumericOutOfRange {
        message: "value overflows numeric format".into(),
    })
}

/// The unscaled values of an integer or decimal array, nulls skipped.
fn unscaled(values: &ArrayRef) -> Vec<i128> {
    match values.data_type() {
        DataType::Int64 => values
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .map(i128::from)
            .collect(),
        _ => values
            .as_primitive::<Decimal128Type>()
            .iter()
            .flatten()
            .collect(),
    }
}

impl ExactAvg {
    fn add(&mut self, v: i128, sign: i64) -> DfResult<()> {
        self.sum = if sign > 0 {
            self.sum.checked_add(v)
        } else {
            self.sum.checked_sub(v)
        }
        .ok_or_else(overflow)?;
        self.count += sign;
        Ok(())
    }

    fn sum_type(&self) -> DataType {
        DataType::Decimal128(MAX_PRECISION, self.input_scale)
    }
}

impl Accumulator for ExactAvg {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
        for v in unscaled(values) {
            if let Some(seen) = &mut self.distinct {
                if !seen.insert(v) {
                    continue;
                }
            }
            self.add(v, 1)?;
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        if let Some(values) = values.first() {
            for v in unscaled(values) {
                self.add(v, -1)?;
            }
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        self.distinct.is_none()
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let t = DataType::Decimal128(MAX_PRECISION, self.scale);
        if self.count == 0 {
            return ScalarValue::try_from(&t);
        }
        let shift = u32::try_from(self.scale - self.input_scale).unwrap_or(0);
        let num = i256::from_i128(self.sum)
            .checked_mul(
                i256::from_i128(10)
                    .checked_pow(shift)
                    .ok_or_else(overflow)?,
            )
            .ok_or_else(overflow)?;
        let count = i256::from_i128(i128::from(self.count));
        let (q, r) = (num.wrapping_div(count), num.wrapping_rem(count));
        // Half away from zero, as PostgreSQL rounds a numeric quotient.
        let q = if r.wrapping_abs().wrapping_mul(i256::from_i128(2)) >= count {
            q.wrapping_add(if num < i256::ZERO {
                i256::MINUS_ONE
            } else {
                i256::ONE
            })
        } else {
            q
        };
        let q = q.to_i128().ok_or_else(overflow)?;
        if !Decimal128Type::is_valid_decimal_precision(q, MAX_PRECISION) {
            return Err(overflow());
        }
        Ok(ScalarValue::Decimal128(Some(q), MAX_PRECISION, self.scale))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .distinct
                .as_ref()
                .map_or(0, |s| s.capacity() * std::mem::size_of::<i128>())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let t = self.sum_type();
        if let Some(seen) = &self.distinct {
            let values: Vec<ScalarValue> = seen
                .iter()
                .map(|v| ScalarValue::Decimal128(Some(*v), MAX_PRECISION, self.input_scale))
                .collect();
            let list = ScalarValue::new_list_nullable(&values, &t);
            return Ok(vec![ScalarValue::List(list)]);
        }
        Ok(vec![
            ScalarValue::Int64(Some(self.count)),
            ScalarValue::Decimal128(Some(self.sum), MAX_PRECISION, self.input_scale),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        if self.distinct.is_some() {
            let Some(lists) = states.first() else {
                return Ok(());
            };
            let lists: &ListArray = lists.as_list();
            for values in lists.iter().flatten() {
                self.update_batch(&[values])?;
            }
            return Ok(());
        }
        let [counts, sums] = states else {
            return Err(to_df(Error::internal("avg state without count and sum")));
        };
        let counts: &Int64Array = counts.as_primitive();
        let sums: &Decimal128Array = sums.as_primitive();
        for (count, sum) in counts.iter().zip(sums.iter()) {
            if let (Some(count), Some(sum)) = (count, sum) {
                self.sum = self.sum.checked_add(sum).ok_or_else(overflow)?;
                self.count += count;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avg_of(values: &[i64]) -> ScalarValue {
        let mut acc = ExactAvg {
            input_scale: 0,
            scale: AVG_MIN_SCALE,
            sum: 0,
            count: 0,
            distinct: None,
        };
        let array: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
        acc.update_batch(&[array]).expect("update");
        acc.evaluate().expect("evaluate")
    }

    #[test]
    fn avg_rounds_half_away_from_zero() {
        assert_eq!(
            avg_of(&[0, 2, 0]).to_string(),
            "0.6666666666666667",
            "2/3 rounds up"
        );
        assert_eq!(avg_of(&[0, -2, 0]).to_string(), "-0.6666666666666667");
        assert_eq!(avg_of(&[1, 2]).to_string(), "1.5000000000000000");
        assert_eq!(avg_of(&[]), ScalarValue::Decimal128(None, 38, 16));
    }

    #[test]
    fn avg_of_large_bigints_does_not_overflow() {
        let v = avg_of(&[i64::MAX, i64::MAX, i64::MAX]);
        assert_eq!(v.to_string(), format!("{}.0000000000000000", i64::MAX));
    }
}
